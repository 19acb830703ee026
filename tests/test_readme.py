"""The README's code, run as written: the notebook cells and the plain script."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"

# Runs a block of notebook cells (top-level ``await``) as IPython would, then reports what
# the peers saw: the chat line must have arrived at bob, not only be logged at alice.
_NOTEBOOK_RUNNER = """
import ast, asyncio, json, sys

source = sys.stdin.read()
code = compile(source, "<README>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

async def main():
    names = {}
    result = eval(code, names)
    if asyncio.iscoroutine(result):
        await result
    alice, bob = names["alice"], names["bob"]
    print(json.dumps({
        "bob_chat": [[m.remote, m.text] for m in bob.chat_log],
        "alice_chat": [[m.remote, m.text] for m in alice.chat_log],
        "alice_channel_events": sorted(
            e.value for e in alice.events if e.event == "datachannel-open"),
        "bob_channel_events": sorted(
            e.value for e in bob.events if e.event == "datachannel-open"),
        "lab_running": names["lab"].url is not None,
    }))

asyncio.run(main())
"""


def _python_block(after_heading: str, index: int = 0) -> str:
    """The ``index``-th fenced python block below the heading ``after_heading``."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n## {after_heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return str(blocks[index])


async def _run(args: list[str], stdin: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_notebook_snippet_delivers_the_chat_line(tmp_path: Path) -> None:
    import json

    code, out, err = await _run(
        [sys.executable, "-c", _NOTEBOOK_RUNNER], _python_block("In a notebook"), tmp_path
    )
    assert code == 0, err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert ["alice", "hello"] in seen["bob_chat"], seen  # delivered, not only logged
    assert seen["alice_chat"] == [[None, "hello"]]
    # both sides report both channels open: the answerer too
    assert seen["alice_channel_events"] == ["chat", "cursors"], seen
    assert seen["bob_channel_events"] == ["chat", "cursors"], seen
    assert not seen["lab_running"]  # the snippet's stop() ran
    assert (tmp_path / "out" / "samples.csv").is_file()
    assert "Task was destroyed" not in err and "never awaited" not in err, err[-3000:]


async def test_script_snippet_runs_and_exits_clean(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(_python_block("In a notebook", 1), encoding="utf-8")
    code, out, err = await _run([sys.executable, str(script)], "", tmp_path)
    assert code == 0, err[-3000:]
    assert "['hello']" in out, out
    assert "alice" in out and "bob" in out  # the summary's pairs
    assert "Task was destroyed" not in err and "never awaited" not in err, err[-3000:]


_FORGETFUL_SCRIPT = """
import asyncio, signal, sys
from rtclab import Lab

signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in background

async def main():
    lab = Lab()
    await lab.start()
    await lab.peer("alice", room="r", width=160, height=120)
    await lab.peer("bob", room="r", width=160, height=120)
    await lab.wait_connected()
    await asyncio.sleep(0.5)
    print("connected", flush=True)
    if sys.argv[1] == "wait":
        await asyncio.sleep(60)  # until Ctrl-C
    # returns without lab.stop(): asyncio.run cancels what is left

asyncio.run(main())
"""


async def test_a_script_that_forgets_stop_leaves_nothing_pending(tmp_path: Path) -> None:
    code, out, err = await _run([sys.executable, "-c", _FORGETFUL_SCRIPT, "end"], "", tmp_path)
    assert code == 0, err[-3000:]
    assert "connected" in out
    assert "Task was destroyed" not in err, err[-3000:]
    assert "never awaited" not in err, err[-3000:]


async def test_ctrl_c_closes_the_lab_cleanly(tmp_path: Path) -> None:
    import signal

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FORGETFUL_SCRIPT, "wait",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"connected"
    proc.send_signal(signal.SIGINT)
    err = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
    await proc.wait()
    assert "KeyboardInterrupt" in err  # the script's own Ctrl-C, as Python shows it
    assert "Task was destroyed" not in err, err[-3000:]
    assert "never awaited" not in err, err[-3000:]
