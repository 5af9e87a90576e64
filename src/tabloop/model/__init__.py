"""The network, the model bundle (the unit of deployment) and the predictor built from it."""
