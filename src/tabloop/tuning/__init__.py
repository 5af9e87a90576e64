"""``make tune``: Optuna studies of the network and of LightGBM with the same budget, written to ``tuned.yaml``."""
