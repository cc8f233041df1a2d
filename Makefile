# Two commands for a fresh machine: `make scores` and `make test`. Both install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATASET ?= digits
ARGS ?=
RECIPE ?= $(DATASET)
WORKSPACE ?= workspace
STAMP := $(VENV)/.installed
REPORT_RUN ?= $(RECIPE)
REPORT_ARGS ?=

.PHONY: install scores report test test-fast lint format bench app clean-workspace

install: $(STAMP)

$(STAMP): requirements.txt requirements-docs.txt pyproject.toml scripts/install-sysdeps.sh
	@scripts/install-sysdeps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt -r requirements-docs.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

scores: install
	$(BIN)/curate run $(RECIPE) --workspace "$(WORKSPACE)" $(ARGS)

# the report of a run (default: the default recipe's run), after `make scores` when it is not scored yet
report: install
	@$(BIN)/curate query "SELECT count(*) AS n FROM epoch_metrics WHERE run = '$(subst ','',$(REPORT_RUN))'" \
		--format csv --workspace "$(WORKSPACE)" 2>/dev/null | tail -n 1 | grep -qx '[1-9][0-9]*' \
		|| $(MAKE) scores
	$(BIN)/curate report "$(REPORT_RUN)" --workspace "$(WORKSPACE)" \
		--out "$(WORKSPACE)/reports/$(REPORT_RUN)" $(REPORT_ARGS)

# one worker per usable core (pytest-xdist); a test module stays on one worker, so its module fixtures
# are built once; PYTEST_ARGS adds options, e.g. PYTEST_ARGS='-n 0' for one process
PYTEST_ARGS ?=
test: install
	@scripts/install-browser.sh
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check curate tests benchmarks app
	$(BIN)/ruff format --check curate tests benchmarks app

format: install
	$(BIN)/ruff format curate tests benchmarks app
	$(BIN)/ruff check --fix curate tests benchmarks app

bench: install
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_scores.py
	$(BIN)/python benchmarks/bench_stats.py
	$(BIN)/python benchmarks/bench_app.py
	$(BIN)/python benchmarks/bench_eval.py
	$(BIN)/python benchmarks/bench_precision.py
	$(BIN)/python benchmarks/bench_bf16_step.py

app: install
	$(BIN)/curate app --workspace "$(WORKSPACE)"

# this documentation site (docs/, mkdocs.yml) into site/ (make install brings requirements-docs.txt);
# --strict fails on any warning (a broken link or anchor, a docstring out of step)
.PHONY: docs
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
