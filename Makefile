# Two commands on a fresh machine: `make repro` runs the pipeline, `make test` runs the tests.
# Both create .venv on first use and install the pinned set from requirements.lock.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install repro test lint lock clean docs

install: $(STAMP)

# pip without -q: each package as it is collected, downloaded (with a progress bar) and installed.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || { echo "== creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "== installing requirements.lock into $(VENV): about 6 GB on Linux (PyTorch with CUDA's libraries), \
	several minutes on a fast connection"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -r requirements.lock
	@echo "== installing cocoseg itself (editable: src/ is used in place)"
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)
	@echo "== $(VENV) is ready; \`source $(VENV)/bin/activate\` puts dvc and cocoseg on your PATH"

repro: install
	$(BIN)/dvc repro

test: install lint
	$(BIN)/python -m pytest

# Linters: ruff (pycodestyle, pyflakes, import order, bugbear, pyupgrade), ruff's formatter, mypy on the shared core.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src/cocoseg/core

# Re-pin after changing pyproject.toml: one lock for Linux and macOS (needs uv: pip install uv).
lock:
	@command -v uv >/dev/null || { echo "make lock needs uv, which resolves one lock for every platform:" \
	"pip install uv (or see https://docs.astral.sh/uv/getting-started/installation/), then make lock again" >&2; \
	exit 1; }
	uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --no-header -o requirements.lock

clean:
	rm -rf $(VENV)

# The docs site from docs/ into site/ (mkdocs.yml); --strict fails on a broken link or a page left out of the nav.
docs: install
	$(BIN)/mkdocs build --strict
