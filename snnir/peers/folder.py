"""Peer libraries in a folder of their own, looked at from a child Python whose path starts there.

The shared environment holds one version of each library. Another version the prediction matrix
needs lives in ``.venv-peers/<library>/`` (git-ignored; ``scripts/install_norse_1_0.sh``, run by
``make interop``, never by ``make test``) and is imported only in a child of this Python with that
folder first on its ``PYTHONPATH``: it shadows the environment's version while torch, nir and
numpy come from the environment. The child answers in one JSON line; arrays travel as ``.npy``
(``allow_pickle=False``); nothing is unpickled.

``norse-1.0`` is Norse 1.0.0 (January 2023), the one Norse release before 1.1. It predates NIR:
its ``norse.torch`` has no ``from_nir`` (nor ``to_nir``), so it imports no file, which the child
confirms (:func:`probe`). Its neuron cells still run there (``tests/interop/test_norse_1_0.py``).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from snnir.peers.child import ask

_REPO = Path(__file__).resolve().parents[2]
#: library -> the folder that holds it
FOLDERS = {"norse-1.0": _REPO / ".venv-peers" / "norse-1.0"}
#: library -> (module, attribute) of the importer a file would be given to
IMPORTERS = {"norse-1.0": ("norse.torch", "from_nir")}
#: what puts each library in its folder
INSTALLERS = {"norse-1.0": "scripts/install_norse_1_0.sh (run by make interop)"}
_CHILD = "SNNIR_PEER_FOLDER"  # set in a child: the folder it was started for
_TIMEOUT_S = 300


def inside(library: str) -> bool:
    """Whether this Python is the child started for ``library``'s folder."""
    return os.environ.get(_CHILD) == str(FOLDERS[library])


def child_env(library: str) -> dict[str, str]:
    """The environment of a child Python importing ``library`` from its folder and snnir from here."""
    paths = [str(FOLDERS[library]), str(_REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), _CHILD: str(FOLDERS[library])}


def run_child(library: str, args: list[str]) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``library``'s child environment (output captured as text, 300 s at most)."""
    return subprocess.run([sys.executable, *args], env=child_env(library), capture_output=True, text=True,
                          timeout=_TIMEOUT_S, check=False)


@functools.lru_cache(maxsize=None)
def probe(library: str) -> tuple[str | None, str | None]:
    """``(why library cannot run here, why its importer reads no file)``, each ``None`` when it can;
    asked once per process, of a child Python."""
    folder = FOLDERS[library]
    if not (folder / IMPORTERS[library][0].split(".")[0]).is_dir():
        return f"{library} is not installed here (no {folder}; {INSTALLERS[library]} puts it there)", None
    command = [sys.executable, "-c", f"import json; from snnir.peers.folder import answer; "
                                     f"print(json.dumps(answer({library!r})))"]
    line, why = ask(command, f"{library}: the child Python in {folder}", _TIMEOUT_S, env=child_env(library))
    if line is None:
        return why, None
    found = json.loads(line)
    return found["missing"], found["no_importer"]


def answer(library: str) -> dict[str, str | None]:
    """In the child: whether ``library`` imports here, at the version asked for, and has its importer."""
    from snnir.peers import installed

    missing = installed(library)
    if missing is not None:
        return {"missing": missing, "no_importer": None}
    module, attribute = IMPORTERS[library]
    top = module.split(".")[0]
    version = importlib.import_module(top).__version__
    has_importer = hasattr(importlib.import_module(module), attribute)
    return {"missing": None, "no_importer": None if has_importer else
            f"{top} {version} has no {module}.{attribute} (it predates NIR): it imports no NIR file"}
