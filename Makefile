# Two commands for a newcomer: `make demo` and `make test`. Both set up what is
# missing first (a .venv, pip packages, Debian packages) and do nothing more
# when everything is already there.

VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check -q
STAMP   := $(VENV)/.spidercache-installed
DEBS    := redis-server memcached dataset-fashion-mnist
# apt-get needs root; use sudo when we are not root and it exists.
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test lint setup system-packages python-packages proto docs clean

demo: setup
	$(VENV)/bin/spidercache demo

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider

# Style, types and layers (configured in pyproject.toml): ruff lint and format,
# mypy on the engine, import-linter's layer and `testing` contracts.
lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

setup: system-packages python-packages

# One `apt-get update`, then install only what dpkg says is missing.
system-packages:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

python-packages: $(STAMP)

# torch first, pinned to the CPU wheel on disk, so nothing later can pull a
# CUDA build; then the package with its test extras. The stamp is redone only
# when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test]'
	@touch $(STAMP)

# The cache server's gRPC code is checked in; remake it after editing the .proto.
proto: python-packages
	$(PY) -m grpc_tools.protoc -I src --python_out=src --grpc_python_out=src src/spidercache/server/cache.proto

# docs/benchmarks.md is the benchmark sections of docs/bench/, one after another.
BENCH_SECTIONS := sim train spider server embedding embedding-results gati weights
docs:
	@{ cat docs/bench/_intro.md; for s in $(BENCH_SECTIONS); do \
	  if [ -f docs/bench/$$s.md ]; then printf '\n'; \
	    sed -E -e 's#\]\(([A-Za-z0-9_.-]+\.(png|json|md)(\#[A-Za-z0-9_-]+)?)\)#](bench/\1)#g' -e 's#\]\(\.\./#](#g' docs/bench/$$s.md; fi; done; } > docs/benchmarks.md
	@echo "wrote docs/benchmarks.md"

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
