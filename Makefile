# The two commands of README.md: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgres://postgres@127.0.0.1:5432/panacare

.PHONY: run test lint venv clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python deploy/dev/run.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	SECRET_KEY=lint DATABASE_URL=sqlite:///:memory: $(BIN)/python manage.py makemigrations --check --dry-run

test: lint
	DATABASE_URL=$${DATABASE_URL:-$(PG_URL)} $(BIN)/python -m pytest
	DATABASE_URL=sqlite:///$(CURDIR)/var/test.sqlite3 $(BIN)/python -m pytest -m "not postgres"

clean:
	rm -rf $(VENV) var db.sqlite3*
