"""``helm-dspy grid``: optimize and evaluate scenarios x models x methods as a graph, resumable, in parallel."""
