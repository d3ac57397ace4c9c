"""Optimize a HELM scenario's prompt with DSPy: data, program, objective, methods, run."""
