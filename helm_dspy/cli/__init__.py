"""The ``helm-dspy`` command line."""
