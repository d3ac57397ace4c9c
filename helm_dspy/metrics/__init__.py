"""HELM metric classes with HELM 0.5.16's MedHELM scoring bugs fixed (both figures reported)."""
