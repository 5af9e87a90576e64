"""Thin entry points, one per DVC stage: parse arguments, load the config, call the library."""
