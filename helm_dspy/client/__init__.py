"""Talking to models through HELM: the DSPy LM bridge, and (later) the HELM client that runs agents."""
