# Two commands on a fresh machine: `make dev` runs the app, `make test` passes the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DEMO ?= 1
DEMO_RATE ?= 2

.PHONY: dev test lint format lock migrate clean help

help:
	@echo "make dev     run the app on http://127.0.0.1:$(PORT) (SQLite, in-process bus)"
	@echo "make test    run the test suite (needs RabbitMQ, MariaDB/MySQL and Chromium)"
	@echo "make lint    ruff and black --check"
	@echo "make lock    re-pin requirements*.txt from requirements*.in"

# The virtualenv, rebuilt when a pinned requirement changes.
$(BIN)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed requirements-dev.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	touch $@

# A development .env with a fresh secret, written once and never overwritten.
.env:
	@umask 077 && { \
		echo "APP_ENV=development"; \
		echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')"; \
		echo "BROKER_URL=filesystem://"; \
		echo "PORT=$(PORT)"; \
	} > $@
	@echo "wrote $@ (development settings; see .env.example for the rest)"

migrate: $(BIN)/.installed .env
	$(BIN)/pulseboard db upgrade

# The demo producer runs beside the server (DEMO=0 leaves it out), so the pages
# show live data from the first minute; Ctrl-C stops both.
dev: migrate
	@if [ "$(DEMO)" = 1 ]; then \
		trap 'kill $$demo 2>/dev/null' EXIT INT TERM; \
		$(BIN)/pulseboard events demo --rate $(DEMO_RATE) & demo=$$!; \
	fi; \
	$(BIN)/gunicorn --reload --bind 127.0.0.1:$(PORT)

# The system packages and services the suite talks to, set up when missing
# (with PULSEBOARD_ALLOW_SKIP=1 what cannot be set up is skipped instead).
test: $(BIN)/.installed-dev
	@bash tests/prepare.sh || [ "$$PULSEBOARD_ALLOW_SKIP" = 1 ]
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/black --check .

format: $(BIN)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/black .

lock: $(BIN)/.installed-dev
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
