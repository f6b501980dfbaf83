# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
NIR_VERSION := 1.0.4
CONSTRAINTS := $(VENV)/constraints.txt
STAMP := $(VENV)/.installed

.PHONY: demo test install bench interop lava-env clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first (a local CPU wheel here), then everything else under the constraints file,
# so no later install can swap torch (or nir, or numpy once pinned there). An existing
# constraints file is kept: it may pin more than this default.
$(STAMP): pyproject.toml requirements-interop.txt scripts/install_interop.sh | $(PY)
	$(PIP) install -q torch==$(TORCH_VERSION)
	test -f $(CONSTRAINTS) || printf 'torch==$(TORCH_VERSION)\nnir==$(NIR_VERSION)\n' > $(CONSTRAINTS)
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[test]"
	scripts/install_interop.sh $(PY) $(CONSTRAINTS)
	$(PIP) download -q --no-deps nir==1.0.8 -d $(VENV)/nir-1.0.8
	touch $(STAMP)

# The C++ neuron kernels (about 35 s once; cached by a hash of their sources): where no
# compiler is found, compiled modules run the Python loop instead.
install: $(STAMP)
	$(VENV)/bin/snnir native --build || echo "snnir: native kernels not built; compiled modules use the Python loop"

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest -q -ra

bench: install
	$(PY) benchmarks/bench.py

# Lava (lava-nc) needs Python 3.10: its own .venv-lava, made where one is found (else its cells skip).
lava-env:
	scripts/make_lava_env.sh

interop: install lava-env
	scripts/install_norse_1_0.sh $(PY)
	$(PY) benchmarks/interop_matrix.py
	$(PY) benchmarks/prediction_matrix.py

clean:
	rm -rf $(VENV) .venv-lava build *.egg-info
