# IamNN Studio: `make test` sets up .venv on first use; `make run` starts the app.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-from-pyproject
PYTEST_ARGS ?=
DATASET_DIR := /usr/share/datasets/fashion-mnist
DATASET_PKG := dataset-fashion-mnist

.PHONY: venv test run bench reproduce screenshots clean

venv: $(STAMP)

# Reinstalls only when pyproject.toml changes (or the venv is new).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

test: venv
	QT_QPA_PLATFORM=offscreen OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Fashion-MNIST from Debian when it is missing and apt-get can be used; otherwise only a warning
# (the app can still use other data sets).
run: venv
	@if [ ! -d $(DATASET_DIR) ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "warning: $(DATASET_DIR) missing and no apt-get here; skipping $(DATASET_PKG)" >&2; \
	  else \
	    if [ "$$(id -u)" = 0 ]; then sudo=; \
	    elif command -v sudo >/dev/null; then sudo=sudo; \
	    else sudo=none; fi; \
	    if [ "$$sudo" = none ]; then \
	      echo "warning: $(DATASET_DIR) missing; run 'apt-get install $(DATASET_PKG)' as root" >&2; \
	    else \
	      echo "installing $(DATASET_PKG) with apt-get"; \
	      $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DATASET_PKG) >/dev/null \
	      || { $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DATASET_PKG) >/dev/null; } \
	      || echo "warning: could not install $(DATASET_PKG); Fashion-MNIST will be unavailable" >&2; \
	    fi; \
	  fi; \
	fi
	OMP_WAIT_POLICY=PASSIVE $(BIN)/iamnn-studio

bench: venv
	$(BIN)/python benchmarks/run_all.py

reproduce: venv
	$(BIN)/python benchmarks/reproduce.py

screenshots: venv
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m iamnn_studio.gui.screenshots

# Build outputs and caches; keeps .venv (delete it by hand for a fresh start).
clean:
	rm -rf build dist .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
