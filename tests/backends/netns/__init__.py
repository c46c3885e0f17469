"""A room learner emulated without Docker: pods in Linux network namespaces (see room.py)."""
