"""Apache Airflow 3 provider for the Sonarly prospecting quota and Indeed Sponsored Jobs API usage."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
