"""Predict late arrivals of NYC flights: the core library behind the pipeline, the service and the monitoring."""

from importlib.metadata import version

__version__ = version("flightdelay")
