"""The docker backend: a hardened container per session, driven through the Docker API."""
