"""The ID-JAG lab."""

__version__ = "0.1.0"
