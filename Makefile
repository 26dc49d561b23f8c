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

.PHONY: install demo test lint typecheck pytest sandbox clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"
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
	$(RUN) pytest $(PYTEST_ARGS)

test: lint typecheck pytest  ## ruff, mypy and pytest

sandbox: install  ## serve the sandbox on http://127.0.0.1:8765 in the foreground
	$(RUN) python -m airflow_provider_quota.sandbox --port 8765

clean:
	rm -rf .venv $(TOOLS) .demo .mypy_cache .ruff_cache .pytest_cache
