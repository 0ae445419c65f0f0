# microfair: the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= $(CURDIR)/demo
PYTEST_ARGS ?=

.PHONY: demo test system install lock clean-demo bioformats assets

## System tools (restic, rsync, npm, and for the tests sshd, a JRE, Chromium, Redis, PostgreSQL ...): the
## packages deploy/system-packages.txt lists for $(FOR); the script installs the missing ones with apt-get
## when run as root, and otherwise names them (with the apt-get command) and stops. .ci/run and the
## Dockerfile install from the same list.
FOR ?= test
system:
	deploy/install-system-packages.sh --for $(FOR)

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null
	$(PY) -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install --python $(PY) --compile-bytecode -r requirements.lock
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .
	@touch $@

install: $(VENV)/.installed

lock:
	uv pip compile -q requirements.txt -o requirements.lock --python-version 3.11 --python-platform x86_64-manylinux_2_28

## Optional GPL-2.0 Bio-Formats fallback reader: the Python packages and the jar (offline afterwards).
BIOFORMATS_JAR ?= $(CURDIR)/vendor/bioformats/bioformats_package.jar
bioformats: install
	$(VENV)/bin/uv pip install --python $(PY) -r requirements-bioformats.txt
	test -f $(BIOFORMATS_JAR) || PATH=$(VENV)/bin:$$PATH $(PY) -m microfair.imaging.fetch_bioformats --dest $(dir $(BIOFORMATS_JAR))

## The dashboard's front-end assets (htmx), from the npm registry into plugins/microfair_dashboard/static/vendor.
assets: install
	$(PY) plugins/microfair_dashboard/build_assets.py

## Run microfair_ingest end to end on SQLite and a local dask cluster, over a sample landing zone.
demo: FOR = demo
demo: system install assets
	$(PY) -m microfair.demo --root $(DEMO_DIR)

## Run the test suite (unit, integration with real tools and sample files, DAG tests).
test: FOR = test
test: system install assets
	$(PY) -m pytest $(PYTEST_ARGS)

clean-demo:
	chmod -R u+w $(DEMO_DIR) 2>/dev/null || true
	rm -rf $(DEMO_DIR)
