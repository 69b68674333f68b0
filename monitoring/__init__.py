"""Drift and performance monitoring with Evidently (imports models/ only)."""
