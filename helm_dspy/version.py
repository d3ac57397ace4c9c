"""The package version (its own module: reading it must not register the plugin)."""

__version__ = "0.1.0"
