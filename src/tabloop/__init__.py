"""A tabular binary-classification loop: the core library behind the pipeline, the service and the monitoring."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tabloop")
except PackageNotFoundError:  # imported from a model's code_paths, without the package installed
    __version__ = "0+unknown"
