"""FastAPI service: transports, persistence, security, audit, worklist (imports models/, monitoring/)."""
