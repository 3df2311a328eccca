# Two commands on a fresh machine: `make repro` runs the pipeline, `make test` runs the tests.
# Both create .venv on first use and install the pinned set from requirements.lock.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install repro test lock clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

repro: install
	$(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest

# Re-pin after changing pyproject.toml: one lock for Linux and macOS (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --no-header -o requirements.lock

clean:
	rm -rf $(VENV)
