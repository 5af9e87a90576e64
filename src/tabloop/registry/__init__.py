"""Glue to the systems that record models: the MLflow registry, the promotion gate, the DVC repository."""
