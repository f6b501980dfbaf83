"""The one exception type users see, and how names appear in what users read."""

from __future__ import annotations

import os
import sys
import warnings

#: Names longer than this are shown as their head and tail around the count of characters left out.
MAX_SHOWN_NAME = 80


def escape(text: str) -> str:
    """``text`` on one line and inert on a terminal: backslashes, newlines, escape sequences
    and every other unprintable character are written as Python escapes (``\\n``, ``\\x1b``)."""
    return "".join(ch if ch.isprintable() and ch != "\\" else repr(ch)[1:-1] for ch in str(text))


def one_line(text: str) -> str:
    """``text`` with its unprintable characters escaped, backslashes kept (so text already
    :func:`escape`\\ d is unchanged): what a message looks like on a terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def shown(name: str) -> str:
    """A node name as printed: :func:`escape`\\ d, and cut to about :data:`MAX_SHOWN_NAME`
    characters keeping its start and end (``head...[N more]...tail``)."""
    text = escape(name)
    if len(text) <= MAX_SHOWN_NAME:
        return text
    head, tail = text[: MAX_SHOWN_NAME - 30], text[-16:]
    return f"{head}...[{len(text) - len(head) - len(tail)} more]...{tail}"


class SnnirError(Exception):
    """A problem with a user's graph, file or input, stated in one line.

    ``node`` names the node at fault (``None`` when the problem is not local
    to one node); it is prefixed, :func:`shown`, to the message so every report says where.
    The message is kept on one line (:func:`one_line`), whatever names or text it quotes.

    ``flag`` names the boolean keyword argument that fixes the problem, if one does: the message
    ends ``(read with FLAG=True to fix)``; the command line names its own option instead
    (:meth:`for_cli`).
    """

    def __init__(self, message: str, node: str | None = None, *, flag: str | None = None):
        self.node = node
        self.reason = message
        self.flag = flag
        hint = f" (read with {flag}=True to fix)" if flag else ""
        text = one_line(message) + hint
        super().__init__(f"node '{shown(node)}': {text}" if node is not None else text)

    def for_cli(self) -> "SnnirError":
        """This error with its hint naming the command-line option (``--flag``)."""
        if self.flag is None:
            return self
        return SnnirError(f"{self.reason} (add --{self.flag.replace('_', '-')} to fix)", self.node)


class SnnirWarning(UserWarning):
    """Something assumed or changed on the user's behalf (defaults applied, a file repaired)."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = SnnirWarning) -> None:
    """Issue a warning attributed to the user's line: the first caller outside the snnir package
    (whatever the depth of snnir calls between), so filters and tracebacks point there."""
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(category(message), stacklevel=level - 1 if frame is None else level)
