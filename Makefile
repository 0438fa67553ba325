# Two commands for a fresh machine (Python 3.11):  make demo   |   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PIC := $(VENV)/bin/pic
DEMO_DIR ?= build/demo
DEMO_CATALOG ?= build/demo-catalog.db
DEMO_REPORT ?= build/demo-report

.PHONY: demo test lint setup clean

setup: $(VENV)/.installed

# torch is installed first and pinned to the CPU build (torch==2.13.0); a bare "torch" would pull CUDA wheels.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

# The loop pic is for: an (example) photographer's darktable crops -> pic learn -> pic batch on her other photos.
# Starts from scratch each time, so a second run shows the same as the first.
demo: setup
	rm -rf $(DEMO_DIR) $(DEMO_REPORT) $(DEMO_CATALOG) $(DEMO_CATALOG)-wal $(DEMO_CATALOG)-shm
	$(PIC) demo $(DEMO_DIR) --catalog $(DEMO_CATALOG)
	$(PIC) learn --user ada --from-library $(DEMO_DIR) --catalog $(DEMO_CATALOG)
	$(PIC) batch $(DEMO_DIR) --user ada --catalog $(DEMO_CATALOG)
	$(PIC) report $(DEMO_DIR) --user ada --html $(DEMO_REPORT) --title "Ada's photos, cropped by pic in her style" --catalog $(DEMO_CATALOG)
	$(PIC) demo $(DEMO_DIR) --recap --report $(DEMO_REPORT) --catalog $(DEMO_CATALOG)

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/pytest -q -ra

clean:
	rm -rf build
