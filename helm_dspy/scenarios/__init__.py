"""HELM scenarios that also yield train/valid instances for optimizing, from the mirror or upstream."""
