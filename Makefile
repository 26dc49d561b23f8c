# Two commands do all the set-up on a machine with only Python 3, pip and make:
#   make demo   run the example DAGs against the local sandbox
#   make test   ruff, mypy and pytest
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# uv builds .venv from this machine's Python and never downloads an interpreter.
export UV_PYTHON_DOWNLOADS := never
RUN := $(UV) run --frozen --no-sync
# The lowest supported Airflow, installed as it resolved on its release day (what Airflow's
# constraints pinned then): newer libraries such as cadwyn break Airflow 3.2.0 itself.
FLOOR_AIRFLOW := 3.2.0
FLOOR_DATE := 2026-04-08T00:00:00Z
HOST_PYTHON = "$$($(PYTHON) -c 'import sys; print(sys.executable)')"

.PHONY: install demo test lint typecheck pytest test-floor test-py310 test-mysql bench reliability ui-check sandbox clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(HOST_PYTHON)
	touch $@

install: .venv/.synced  ## create .venv from uv.lock

demo: install  ## run the example DAGs end to end against the sandbox
	$(RUN) python demo/run_demo.py

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install
	$(RUN) mypy

pytest: install
	$(RUN) pytest --ignore=tests/browser $(PYTEST_ARGS)

test: lint typecheck pytest  ## ruff, mypy and pytest

.venv-floor/.synced: $(UV) pyproject.toml
	$(UV) venv --allow-existing --quiet --python $(HOST_PYTHON) .venv-floor
	$(UV) pip install --quiet --python .venv-floor/bin/python --exclude-newer $(FLOOR_DATE) \
		-e . --group dev "apache-airflow==$(FLOOR_AIRFLOW)"
	touch $@

test-floor: .venv-floor/.synced  ## the test suite against the lowest supported Airflow
	.venv-floor/bin/python -m pytest --ignore=tests/browser $(PYTEST_ARGS)

# The oldest Python the package declares (requires-python >= 3.10), from uv.lock as it resolves
# there; uv never downloads it: point PYTHON310 at an interpreter (pyenv's, a distribution's...).
PYTHON310 ?= python3.10

.venv-py310/.synced: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=.venv-py310 $(UV) sync --frozen --python $(PYTHON310)
	touch $@

test-py310: .venv-py310/.synced  ## the test suite on Python 3.10 (PYTHON310=/path/to/python3.10)
	.venv-py310/bin/python -m pytest --ignore=tests/browser $(PYTEST_ARGS)

# mysqlclient compiles against the MariaDB/MySQL client headers (Debian: libmariadb-dev), so the
# mysql group stays out of `make install`; this adds it to .venv and runs the tests marked mysql.
test-mysql: install  ## the warehouse tests on a MySQL/MariaDB server (QUOTA_TEST_MYSQL)
	$(UV) sync --frozen --group mysql --python $(HOST_PYTHON)
	$(RUN) pytest -m mysql $(PYTEST_ARGS)

bench: install  ## benchmarks against HttpSensor/HttpHook; prints one table (docs/performance.md)
	$(RUN) python benchmarks/run.py $(BENCH_ARGS)

reliability: install  ## the fault-injection suite with its figures table (docs/reliability.md)
	$(RUN) python -m tests.reliability.report

ui-check: install  ## both connection forms in headless Chromium against a real Airflow API server
	$(RUN) pytest tests/browser $(PYTEST_ARGS)

sandbox: install  ## serve the sandbox on http://127.0.0.1:8765 in the foreground
	$(RUN) python -m airflow_provider_quota.sandbox --port 8765

clean:
	rm -rf .venv .venv-floor .venv-py310 $(TOOLS) .demo .bench .reliability .mypy_cache .ruff_cache .pytest_cache
