"""After ``helm-run``: the leaderboard summarizer and ``helm-dspy report``."""
