"""The ``features`` stage: joins, derived features, the temporal split and the fitted preprocessing."""
