"""A stand-in for Dolibarr 20.0.2 that serves the lab's sandbox database over HTTP.

Only the pages and API endpoints that the tool uses are implemented, with the field
names, status codes and messages of the real Dolibarr.
"""

from checkpoint.lab.standin.app import StandinServer

__all__ = ["StandinServer"]
