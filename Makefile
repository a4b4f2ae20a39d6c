# Two commands matter: `make run` starts the bot, `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run chat demo bench test test-fast install install-dev gateway clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch is named first and exactly: that pin takes the CPU wheel that lies on disk, not a CUDA build
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

# llama-cpp-python for the `server` tests, from the machine's wheel cache when .ci/llama-wheel built it
$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev]'
	@if ls $$HOME/.cache/moodbot/wheels/llama_cpp_python-*.whl >/dev/null 2>&1; then .ci/llama-wheel $(PY); fi
	touch $@

# the mock Wechaty gateway for the end-to-end tests and the demo (pinned by package-lock.json)
GATEWAY := tests/gateway
GATEWAY_STAMP := $(GATEWAY)/node_modules/.installed
$(GATEWAY_STAMP): $(GATEWAY)/package.json $(GATEWAY)/package-lock.json
	cd $(GATEWAY) && npm install --no-audit --no-fund --loglevel=error
	touch $@

gateway: $(GATEWAY_STAMP)
install: $(STAMP)
install-dev: $(DEV_STAMP)

run: $(STAMP)
	$(PY) -m bot --config config.yaml run

chat: $(STAMP)
	$(PY) -m bot --config config.yaml chat

demo: $(STAMP) $(GATEWAY_STAMP)
	$(PY) -m bot --config config.yaml demo

# accuracy and speed against the baselines; writes bench/REPORT.md, bench/*.png and README's table
bench: $(DEV_STAMP)
	$(PY) -m bench.run

test: $(DEV_STAMP) $(GATEWAY_STAMP)
	$(PY) -m pytest -q -rs

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -m "not model and not gateway"

clean:
	rm -rf $(VENV) .pytest_cache $(GATEWAY)/node_modules
