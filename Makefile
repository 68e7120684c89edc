# The README's two commands: `make run` (set up, demo data, serve) and `make test` (set up, lint, type-check, test).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest browser serve clean screenshots mutation

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q -e ./clients/python  # the agent client, as agents install it
	touch $(STAMP)

# The configured tier is secure by default: the tests give it a key of their own and speak plain HTTP.
TEST_ENV := SECRET_KEY="$${SECRET_KEY:-tests-only-not-a-secret}" \
	SECURE_SSL_REDIRECT="$${SECURE_SSL_REDIRECT:-false}" \
	SESSION_COOKIE_SECURE="$${SESSION_COOKIE_SECURE:-false}" CSRF_COOKIE_SECURE="$${CSRF_COOKIE_SECURE:-false}"

# `make run PORT=8080` (and HOST=0.0.0.0 to listen beyond this machine); links printed and emailed follow them.
HOST ?= 127.0.0.1
PORT ?= 8000
SITE_URL ?= http://$(HOST):$(PORT)
export SITE_URL

run: $(STAMP)
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py demo
	$(BIN)/python manage.py setup_periodic_tasks
	$(BIN)/python manage.py serve --bind $(HOST):$(PORT)

serve: $(STAMP)
	$(BIN)/python manage.py serve --bind $(HOST):$(PORT)

# Screenshots of the queue, a proposal, the dashboard and the audit trail for the README (docs/img/).
screenshots: $(STAMP) browser
	$(BIN)/python tools/screenshots.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(TEST_ENV) $(BIN)/mypy .

# Browser tests drive Debian's Chromium; install it when it is missing and we may.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "Chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

pytest: $(STAMP) browser
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# Mutation testing of the modules that hold the loop's rules (docs/mutation.md): minutes, so not part of `make test`
# or CI. `make mutation MUTATION_ARGS="--only guard"` runs one module.
mutation: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[mutation]"
	$(TEST_ENV) $(BIN)/python benchmarks/mutation.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) var
