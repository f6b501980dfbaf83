#!/usr/bin/env bash
# Install the peer SNN libraries the interop tests compare against, keeping torch,
# numpy and nir pinned. Idempotent: exits at once when every pinned version is present.
#   usage: scripts/install_interop.sh [PYTHON] [CONSTRAINTS]
# Installed without dependencies, because their metadata would replace the pins:
#   norse 1.1.0   needs torchvision (its newest pulls torch 2.15 + CUDA); Norse's model
#                 code does not import it. Its real runtime needs: numpy, torch, nir, nirtorch.
#   sinabs 3.1.3  needs samna (hardware, not used here), pbr, nirtorch, nir<=1.0.4.
#   nirtorch 2.6  declares nir>=1.0.6, but Sinabs needs nir<=1.0.4; the interop tests
#                 shim the one keyword it passes that nir 1.0.4 lacks (tests/interop/peers.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
CONSTRAINTS=${2:-.venv/constraints.txt}
NO_DEPS="norse==1.1.0 sinabs==3.1.3 nirtorch==2.6 pbr"

if "$PY" - "$NO_DEPS" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version
wanted = [line.split("#")[0].strip() for line in open("requirements-interop.txt")] + sys.argv[1].split()
for spec in filter(None, wanted):
    name, _, pinned = spec.partition("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if pinned and have != pinned:
        sys.exit(1)
PYEOF
then
    echo "interop libraries already installed"
    exit 0
fi

"$PY" -m pip install -q -c "$CONSTRAINTS" -r requirements-interop.txt
# shellcheck disable=SC2086 - the list is meant to split
"$PY" -m pip install -q -c "$CONSTRAINTS" --no-deps $NO_DEPS
echo "interop libraries installed"
