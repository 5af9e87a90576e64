"""Honest evaluation on the test split: metrics, baselines, curves, slices and the model card."""
