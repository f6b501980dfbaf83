#!/usr/bin/env bash
# Norse 1.0.0, the one Norse release before 1.1, for the prediction matrix's norse-1.0 column,
# into the git-ignored .venv-peers/norse-1.0 (run by `make interop`; the venv keeps Norse 1.1.0).
# snnir.peers.folder looks at it from a child Python whose path starts with that folder.
# Only the pure-Python package and its own metadata (norse.egg-info) are taken from the sdist:
# its C++ extension (norse_op) is optional (norse/utils/__init__.py imports it in a try) and is
# not built. Idempotent: exits at once when the folder holds it.
#   usage: scripts/install_norse_1_0.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
DEST=.venv-peers/norse-1.0
if [ -f "$DEST/norse/__init__.py" ]; then
    echo "norse 1.0.0 already in $DEST"
    exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation norse==1.0.0 -d "$TMP"
"$PY" - "$TMP/norse-1.0.0.tar.gz" "$TMP/unpacked" <<'PYEOF'
import sys
import tarfile

with tarfile.open(sys.argv[1]) as sdist:
    sdist.extractall(sys.argv[2], filter="data")
PYEOF
rm -rf "$DEST.partial"
mkdir -p "$DEST.partial"
cp -r "$TMP/unpacked/norse-1.0.0/norse" "$TMP/unpacked/norse-1.0.0/norse.egg-info" "$DEST.partial/"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "norse 1.0.0 installed in $DEST"
