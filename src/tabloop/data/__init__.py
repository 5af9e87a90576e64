"""The data stages: ingest the source tables, validate them against the contract."""
