"""Fault-injection reliability suite: ``python -m tests.reliability.report`` runs it and prints its figures."""
