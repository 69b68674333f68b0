"""Business logic as plain classes that know nothing about HTTP (routes delegate here)."""
