"""The pipeline stages, one module each, each with the same kind of entry: ``run(config, ...)`` returns a record of
what it wrote. ``pipelines/<stage>.py`` parses options and calls it; the logic lives in the packages it calls.
"""
