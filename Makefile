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

.PHONY: install demo test lint typecheck pytest test-floor test-python test-mysql bench reliability ui-check integration dist sandbox clean

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

# The suite on another Python the package declares (3.10 to 3.13), from uv.lock as it resolves
# there: `make test-python PYTHON_VERSION=3.12`. uv never downloads an interpreter: the first
# python$(PYTHON_VERSION) that really is that version, on PATH or under pyenv, or PYTHON_INTERPRETER.
PYTHON_VERSION ?= 3.10
PYTHON_INTERPRETER ?=
PYENV_ROOT ?= $(HOME)/.pyenv

.venv-py%/.synced: $(UV) pyproject.toml uv.lock
	@interpreter="$(PYTHON_INTERPRETER)"; \
	if [ -z "$$interpreter" ]; then \
		for candidate in python$* $(PYENV_ROOT)/versions/$*.*/bin/python; do \
			if "$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$*".split("."))))' 2>/dev/null; then \
				interpreter=$$candidate; break; \
			fi; \
		done; \
	fi; \
	[ -n "$$interpreter" ] || { echo "no Python $* interpreter (python$* or pyenv's): set PYTHON_INTERPRETER" >&2; exit 1; }; \
	echo "UV_PROJECT_ENVIRONMENT=.venv-py$* uv sync --frozen --python $$interpreter"; \
	UV_PROJECT_ENVIRONMENT=.venv-py$* $(UV) sync --frozen --python "$$interpreter"
	touch $@

test-python: .venv-py$(PYTHON_VERSION)/.synced  ## the test suite on another Python (PYTHON_VERSION=3.12)
	.venv-py$(PYTHON_VERSION)/bin/python -m pytest --ignore=tests/browser $(PYTEST_ARGS)

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

# A real distributed Airflow on loopback: PostgreSQL metadata database, CeleryExecutor with Redis,
# one worker, scheduler, dag-processor, API server and two triggerers (tests/deployment). The Celery
# provider is in the integration dependency group, so it gets an environment of its own.
.venv-integration/.synced: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=.venv-integration $(UV) sync --frozen --group integration --python $(HOST_PYTHON)
	touch $@

integration: .venv-integration/.synced  ## the scenarios on a real distributed Airflow; table in docs/deployment.md
	.venv-integration/bin/python -m tests.deployment.report $(INTEGRATION_ARGS)

# Release artifacts: the sdist and the wheel, their metadata checked, and the wheel installed with
# plain pip into a fresh virtual environment (versions pinned to uv.lock, as Airflow's constraints
# pin theirs), where Airflow must list the provider and import both hooks and the example DAGs.
TWINE_VERSION := 7.0.0

dist: $(UV)  ## build and check the sdist and the wheel; install the wheel with pip in a fresh venv
	rm -rf dist .dist-check
	$(UV) build --out-dir dist
	$(UV) tool run --from "twine==$(TWINE_VERSION)" twine check --strict dist/*
	mkdir -p .dist-check
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes --format requirements-txt --python $(HOST_PYTHON) \
		--output-file .dist-check/constraints.txt --quiet
	$(PYTHON) -m venv .dist-check/venv
	.dist-check/venv/bin/python -m pip install --quiet --disable-pip-version-check \
		--constraint .dist-check/constraints.txt dist/*.whl
	cd .dist-check && ./venv/bin/python $(CURDIR)/tests/release/check_dist.py \
		--dist $(CURDIR)/dist --example-dags $(CURDIR)/example_dags

sandbox: install  ## serve the sandbox on http://127.0.0.1:8765 in the foreground
	$(RUN) python -m airflow_provider_quota.sandbox --port 8765

clean:
	rm -rf .venv .venv-floor .venv-py3.* .venv-integration $(TOOLS) dist .dist-check .integration .demo .bench .reliability .mypy_cache .ruff_cache .pytest_cache
