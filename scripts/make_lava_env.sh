#!/usr/bin/env sh
# Make .venv-lava: a Python 3.10 virtualenv with lava-nc and nir, which snnir.peers runs Lava in
# (lava-nc needs Python 3.10; snnir's own .venv is 3.11). Without a Python 3.10 it says so and
# exits 0: the Lava cells and tests then skip, saying why.
set -eu
VENV=.venv-lava
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import lava.magma, nir" 2>/dev/null; then
    exit 0
fi
PY310=""
for candidate in "${SNNIR_PYTHON310:-}" "$(command -v python3.10 || true)" \
                 "$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python 2>/dev/null | tail -n 1)"; do
    if [ -n "$candidate" ] && "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 10)" 2>/dev/null; then
        PY310=$candidate; break
    fi
done
if [ -z "$PY310" ]; then
    echo "snnir: no Python 3.10 found (python3.10 on PATH, pyenv's, or SNNIR_PYTHON310): Lava is not installed; its cells skip"
    exit 0
fi
"$PY310" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q lava-nc "nir==1.0.4" h5py numpy \
    || { echo "snnir: installing lava-nc into $VENV failed: its cells skip"; rm -rf "$VENV"; exit 0; }
