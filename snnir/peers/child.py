"""Asking another Python a question: a peer library that lives outside this environment (another
folder, another interpreter) is looked at only from a child process, which answers on its last
line of stdout. Nothing is unpickled."""

from __future__ import annotations

import subprocess


def ask(command: list[str], who: str, timeout_s: float, env: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """``(the child's last stdout line, None)``, or ``(None, why not)`` naming ``who`` when it
    cannot start, times out, fails or prints nothing (its last stderr line, 200 characters)."""
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return None, f"{who} did not answer in {timeout_s:g} s"
    except OSError as exc:
        return None, f"{who} does not start: {type(exc).__name__}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return None, f"{who} fails: {last}"
    return lines[-1], None
