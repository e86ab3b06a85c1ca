# The two commands a new user needs: `make demo` runs the product, `make test` passes the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Tests run on real services: PostgreSQL, Redis.
TEST_ENV := DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/oracle} \
	CACHE_URL=$${TEST_CACHE_URL:-redis://127.0.0.1:6379/1} \
	CELERY_BROKER_URL=$${TEST_BROKER_URL:-redis://127.0.0.1:6379/3}

# Test processes (pytest-xdist): each has its own test database, Redis dbs and simulator
# (tests/conftest.py); two fit this project's 2-core machine. TEST_WORKERS=0 runs in one.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist worksteal

.PHONY: install demo test test-sqlite test-repeat lint check-migrations vendor-charts

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The product on embedded defaults (SQLite, filesystem broker, Bitvavo simulator).
demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Model state against the migrations: no database needed (an in-memory SQLite one is empty).
check-migrations: install
	DATABASE_URL=sqlite://:memory: $(BIN)/python manage.py makemigrations --check --dry-run

test: install
	scripts/services-up
	scripts/browser-up
	$(MAKE) lint check-migrations
	$(TEST_ENV) $(BIN)/pytest $(XDIST)
	$(MAKE) test-sqlite

# The same tests N times in a row (in the test processes), stopping at the first failure:
#   make test-repeat TESTS=tests/browser N=20
#   make test-repeat TESTS='$$(PROCESS_TESTS)' N=20
TESTS ?= tests/browser
N ?= 20
# The files whose tests start processes: Celery workers and beat, the bot, a web process,
# the simulator or compose in a subprocess.
PROCESS_TESTS := $(shell grep -rlE '\bcelery_(worker|beat|process)|web_process_report|sqlite_demo|subprocess[.](Popen|run)' tests --include='test_*.py' | sort)
test-repeat: install
	scripts/services-up
	scripts/browser-up
	$(TEST_ENV) $(BIN)/pytest $(XDIST) -x --repeat $(N) $(TESTS)

# The execution path the demo runs, on a SQLite file database (its tests carry `sqlite`).
test-sqlite: install
	mkdir -p var/test
	$(TEST_ENV) DATABASE_URL=sqlite:///$(CURDIR)/var/test/oracle.sqlite3 $(BIN)/pytest -m sqlite

# The decision screen's chart library, vendored from npm with its licence (the version is
# pinned in the script; the files are committed, so nothing is fetched at run time).
vendor-charts:
	scripts/vendor-lightweight-charts
