"""The reference target: a slow, obviously correct numpy interpreter that defines the semantics."""

from snnir.targets.reference.interpreter import EXTENSIONS, check_lowerings, run

__all__ = ["run", "check_lowerings", "EXTENSIONS"]
