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

# The virtualenv, rebuilt when a pinned requirement changes.  `python3 -m venv`
# puts pip in it with ensurepip, which Debian and Ubuntu ship apart (python3.X-venv):
# without it venv stops half way, so it is installed first where we may (root or
# passwordless sudo, apt-get) and named otherwise.  A virtualenv left without pip
# by such a stop is made again.
$(BIN)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=python3.11)"; exit 1; }
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || \
	$(PYTHON) -m ensurepip --version >/dev/null 2>&1 || { \
		package=python3.$$($(PYTHON) -c 'import sys; print(sys.version_info.minor)')-venv; \
		if [ "$$(id -u)" = 0 ]; then as_root=env; \
		elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as_root="sudo -n env"; fi; \
		if [ -n "$$as_root" ] && command -v apt-get >/dev/null; then \
			echo "installing $$package: $(PYTHON) -m venv needs its ensurepip"; \
			$$as_root DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			$$as_root DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$package; \
		fi; \
		$(PYTHON) -m ensurepip --version >/dev/null 2>&1 || { \
			echo "$(PYTHON) has no ensurepip, which '$(PYTHON) -m venv' needs to put pip in $(VENV)."; \
			echo "Install $$package (sudo apt-get install $$package on Debian/Ubuntu), then run make again."; \
			exit 1; }; \
	}
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
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
