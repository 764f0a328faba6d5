"""The package version, in a module of its own so library modules can record it without importing
schedc/__init__.py (whose lazy entry points sit above them)."""

__version__ = "0.1.0"
