# Two commands for a fresh machine (Python 3.11):  make demo   |   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PIC := $(VENV)/bin/pic
DEMO_DIR ?= build/demo

.PHONY: demo test lint setup clean

setup: $(VENV)/.installed

# torch is installed first and pinned to the CPU build (torch==2.13.0); a bare "torch" would pull CUDA wheels.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

demo: setup
	$(PIC) demo $(DEMO_DIR)
	$(PIC) batch $(DEMO_DIR) --catalog build/demo-catalog.db

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/pytest -q -ra

clean:
	rm -rf build
