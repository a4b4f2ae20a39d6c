# Two commands matter: `make run` starts the bot, `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run chat demo bench bench-replies train heads test test-fast lint install install-dev gateway clean

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

# the wechaty demo runs from the checkout (its Node gateway is in tests/gateway); the official-channel
# demo is part of the package: python -m bot demo --channel wechat_mp|wecom
demo: $(STAMP) $(GATEWAY_STAMP)
	$(PY) -m examples.wechaty_demo --config config.yaml

# accuracy and speed against the baselines; writes bench/REPORT.md, bench/*.png and README's table
bench: $(DEV_STAMP)
	$(PY) -m bench.run

# the fine-tune: one LoRA adapter for replies, mood and crisis (~55 min on 2 cores; the shipped
# adapter's run: seed 1, the rewritten comfort replies, the crisis files it saw), then the heads
# refitted on the served weights; see train/ and README "Fine-tuning"
train: $(DEV_STAMP)
	$(PY) -m train.finetune --out train/out/run --steps 360 --validate-from 200 --seed 1 \
		--crisis-files crisis.jsonl,crisis_more_en.jsonl,crisis_more_zh.jsonl \
		--replace-replies train/data/replies_comfort_v2.jsonl
	rm -rf bot/adapters/gemma3-270m-moodbot && mkdir -p bot/adapters
	cp -r train/out/run/adapter bot/adapters/gemma3-270m-moodbot
	cp train/out/run/train_meta.json bot/adapters/gemma3-270m-moodbot/
	$(PY) -m train.heads
	$(PY) -m train.faq_match

heads: $(DEV_STAMP)
	$(PY) -m train.heads
	$(PY) -m train.faq_match

bench-replies: $(DEV_STAMP)
	$(PY) -m bench.replies

# style, the import layers (handlers -> bot), types (strict on bot/ and handlers/)
lint: $(DEV_STAMP)
	$(PY) -m ruff check bot handlers tests bench examples train
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

test: lint $(GATEWAY_STAMP)
	$(PY) -m pytest -q -rs

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -m "not model and not gateway"

clean:
	rm -rf $(VENV) .pytest_cache $(GATEWAY)/node_modules
