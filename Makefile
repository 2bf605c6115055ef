# IamNN Studio: `make test` sets up .venv on first use; `make run` starts the app.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-from-pyproject
PYTEST_ARGS ?=
# Test processes (pytest-xdist): much of the suite waits on Qt, subprocesses and small ops, so two
# workers halve its time even on 2 cores. TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 2
DATASET_DIR := /usr/share/datasets/fashion-mnist
DATASET_PKG := dataset-fashion-mnist

.PHONY: venv test run desktop-deps bench reproduce screenshots clean

venv: $(STAMP)

# Reinstalls only when pyproject.toml changes (or the venv is new).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

test: venv
	QT_QPA_PLATFORM=offscreen OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Fashion-MNIST from Debian when it is missing and apt-get can be used; otherwise only a warning
# (the app can still use other data sets).
run: venv desktop-deps
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

# Qt's xcb (X11) platform plugin needs these since Qt 6.5; installed only when missing and
# only where apt-get can run as root (a desktop usually has them already).
XCB_LIBS := libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
	libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
desktop-deps:
	@missing=""; for p in $(XCB_LIBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Qt's X11 libraries:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
	  || echo "warning: could not install$$missing; the window may not open on X11" >&2; \
	elif [ -n "$$missing" ] && command -v dpkg-query >/dev/null; then \
	  echo "warning: Qt on X11 needs:$$missing (apt-get install them as root)" >&2; \
	fi

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
