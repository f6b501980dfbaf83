# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
CONSTRAINTS := $(VENV)/constraints.txt
STAMP := $(VENV)/.installed

.PHONY: demo test install bench interop clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first (a local CPU wheel here), then everything else pinned to it.
$(STAMP): pyproject.toml requirements-interop.txt | $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	echo "torch==$(TORCH_VERSION)" > $(CONSTRAINTS)
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[test]"
	$(PIP) install -q -c $(CONSTRAINTS) -r requirements-interop.txt
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest -q -ra

bench: install
	$(PY) benchmarks/bench_tutorial.py

interop: install
	$(PY) benchmarks/interop_matrix.py

clean:
	rm -rf $(VENV) build *.egg-info
