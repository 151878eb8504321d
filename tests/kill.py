"""SIGKILL a landprompt run at a chosen moment, in a fresh process (the kill tests share this helper)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

_SCRIPT = """
import importlib, os, signal, sys
sys.path.insert(0, {tests!r})
module_name, _, attr_path = {target!r}.partition(":")
*owner_path, attr = attr_path.split(".")
owner = importlib.import_module(module_name)
for name in owner_path:
    owner = getattr(owner, name)
real = getattr(owner, attr)
calls = 0

def patched(*args, **kwargs):
    global calls
    counted = {match!r} in repr(args)
    if counted and {before!r} and calls + 1 == {after!r}:
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(*args, **kwargs)
    if counted:
        calls += 1
        if calls == {after!r}:
            os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(owner, attr, patched)
"""


def run_killed(
    folder: Path, target: str, after: int, body: str, *, before: bool = False, match: str = ""
) -> None:
    """Run ``body`` in a new Python process that SIGKILLs itself at the ``after``-th call of ``target``.

    Args:
        folder: Where the script is written.
        target: ``"module:Attr.attr"``, e.g. ``"landprompt.embedder.cube:CubeWriter.write_chunk"`` or
            ``"os:replace"``; the patch is in place before ``body`` runs.
        after: The call that is the last one (killed just after it returns, or just before it runs).
        body: Python code doing the work (imports included).
        before: Kill before the ``after``-th call runs instead of after it returns.
        match: Count only calls whose arguments' ``repr`` holds this text (e.g. ``".part"``).
    """
    script = folder / "killed_run.py"
    tests = str(Path(__file__).parent)
    header = _SCRIPT.format(tests=tests, target=target, after=after, before=before, match=match)
    script.write_text(header + textwrap.dedent(body))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
