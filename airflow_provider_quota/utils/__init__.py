"""Helpers of the operators and sensors: months, check timing, the warehouse table and lineage."""
