"""The neutral core that optimizing and evaluating both build on: methods, agents, programs, prompts."""
