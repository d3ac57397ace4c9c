"""Evaluating agents inside helm-run: the dspy= run expander, derived deployments and the agent client."""
