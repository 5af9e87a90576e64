"""Monitoring: replayed production traffic, Evidently reports and dashboard, the drift gate, retraining."""
