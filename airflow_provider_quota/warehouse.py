"""The public home of :func:`warehouse_table_asset` (its implementation is in ``utils/warehouse.py``)."""

from __future__ import annotations

from airflow_provider_quota.utils.warehouse import warehouse_table_asset

__all__ = ["warehouse_table_asset"]
