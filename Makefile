# The two commands of the README. Both set everything up on a fresh machine first.
VENV ?= .venv
STAMP := $(VENV)/.qwenkit-installed
# Reproductions train tiny models: one torch thread each, and `qwenkit demo` then runs as many at once as there are
# usable cores (each pinned to its own core), which halves the demo's wall time on 2 cores without oversubscribing.
THREADS ?= 1

.PHONY: demo test setup lint clean

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

## make demo: every quick reproduction, one index page (runs/demo/index.html)
demo: $(STAMP)
	$(VENV)/bin/qwenkit demo --out runs/demo --threads $(THREADS)

## make test: lint, then the whole test suite
test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
