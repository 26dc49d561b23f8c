"""
The provider on a real distributed Airflow: ``make integration``.

A PostgreSQL metadata database of its own, CeleryExecutor with Redis as the broker, one Celery
worker, the scheduler, the dag-processor, the API server and two triggerers, each a separate
process with its own log file under ``.integration/logs/``; the example DAGs in its DAGs folder
and the sandbox as both APIs. Scenarios are pytest tests marked ``deployment`` (``make test``
deselects them); ``python -m tests.deployment.report`` runs them and writes the results table
into docs/deployment.md.
"""
