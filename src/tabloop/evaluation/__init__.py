"""Honest evaluation on the test months: metrics, baselines, curves, slices and the model card."""
