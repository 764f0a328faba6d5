"""schedc: an offline cache-schedule compiler for diffusion models."""

__version__ = "0.1.0"
