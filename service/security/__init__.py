"""Authentication (HelseID-style JWT), the route × role policy, and audit."""
