# Two commands for a new user: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast image lint typecheck bench clean model browser-deps replicas

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Service with the synthetic demo cohort on the embedded SQLite default, on 127.0.0.1:8000.
run: $(STAMP)
	$(BIN)/triage demo --host 127.0.0.1 --port 8000

## The whole test suite (PostgreSQL tests run when TRIAGE_TEST_DATABASE_URL is set).
test: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

## The quick loop while editing: leaves out the tests marked slow (training, long drift runs) and
## the browser tests, and says so. `make test` still runs everything, and CI runs `make test`.
test-fast: $(STAMP)
	@echo "test-fast: leaving out tests marked slow or browser; make test runs them all"
	$(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

## Lint rules and formatting (ruff) and types (mypy); all configured in pyproject.toml. CI runs it.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: $(STAMP)
	$(BIN)/mypy

## The container image (Dockerfile). Needs a running Docker engine; says so plainly where there is none.
IMAGE ?= home-followup-triage:0.1.0
image:
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
		docker build -t $(IMAGE) . ; \
	else \
		echo "make image: no Docker engine is running on this machine, so no image was built."; \
		echo "The Dockerfile is still linted by make test (tests/deploy/test_dockerfile.py)."; \
		exit 2; \
	fi

## Two replicas behind HAProxy (installed from Debian when missing) on 127.0.0.1:8000; migrations
## run once first. Set TRIAGE_DATABASE_URL to PostgreSQL (without it: a SQLite file to try it).
## See README "Running several replicas".
replicas: $(STAMP)
	$(BIN)/python deploy/replicas/run.py

## Side-by-side benchmarks (ours vs `mlflow models serve` vs a hello-world floor).
bench: $(STAMP)
	$(BIN)/python -m bench.run

## Rebuild the shipped default model artifact bit-for-bit from its seed.
model: $(STAMP)
	$(BIN)/triage train --shipped

## Debian's Chromium and axe-core for the browser tests (the tests also try this themselves).
browser-deps:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)
	test -f tests/web/.cache/node_modules/axe-core/axe.min.js || npm install --no-save --no-audit --no-fund --prefix tests/web/.cache axe-core@4

clean:
	rm -rf $(VENV) var .pytest_cache .coverage
