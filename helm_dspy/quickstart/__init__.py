"""``helm-dspy quickstart``: the whole job on the four scenarios with one command."""
