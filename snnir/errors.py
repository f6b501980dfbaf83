"""The one exception type users see."""

from __future__ import annotations


class SnnirError(Exception):
    """A problem with a user's graph, file or input, stated in one line.

    ``node`` names the node at fault (``None`` when the problem is not local
    to one node); it is prefixed to the message so every report says where.
    """

    def __init__(self, message: str, node: str | None = None):
        self.node = node
        self.reason = message
        super().__init__(f"node '{node}': {message}" if node is not None else message)


class SnnirWarning(UserWarning):
    """Something assumed or changed on the user's behalf (defaults applied, a file repaired)."""
