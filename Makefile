# Two commands matter: `make run` starts the bot, `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run chat test test-fast install install-dev clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch is named first and exactly: that pin takes the CPU wheel that lies on disk, not a CUDA build
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)
install-dev: $(DEV_STAMP)

run: $(STAMP)
	$(PY) -m bot --config config.yaml run

chat: $(STAMP)
	$(PY) -m bot --config config.yaml chat

test: $(DEV_STAMP)
	$(PY) -m pytest -q -rs

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -m "not model and not gateway"

clean:
	rm -rf $(VENV) .pytest_cache
