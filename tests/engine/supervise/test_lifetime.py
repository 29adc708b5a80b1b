"""A tool started through `tied_to_parent` dies with the engine that started it (kill -9)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from delegation_machine.engine.supervise.lifetime import PARENT_DEATH_SIGNAL, tied_to_parent

ENGINE = textwrap.dedent(
    """
    import subprocess, sys
    from delegation_machine.engine.supervise.lifetime import tied_to_parent
    argv, preexec = tied_to_parent(["sleep", "120"])
    tool = subprocess.Popen(argv, preexec_fn=preexec)
    print(tool.pid, "preexec" if preexec else "setpriv", flush=True)
    tool.wait()
    """
)


@pytest.mark.skipif(not PARENT_DEATH_SIGNAL, reason="no PR_SET_PDEATHSIG on this platform")
def test_a_tool_dies_when_its_engine_is_killed() -> None:
    engine = subprocess.Popen([sys.executable, "-c", ENGINE], stdout=subprocess.PIPE, text=True)
    assert engine.stdout is not None
    tool_pid, how = engine.stdout.readline().split()
    watch = os.pidfd_open(int(tool_pid))
    poller = select.poll()  # not select(): a test run may hold descriptors above 1024
    poller.register(watch, select.POLLIN)
    try:
        assert not poller.poll(0), "the tool must be running"
        engine.send_signal(signal.SIGKILL)
        engine.wait()
        exited = poller.poll(10_000)  # readable once the tool is gone
        assert exited, f"the tool (started by {how}) outlived its killed engine"
    finally:
        os.close(watch)


def test_setpriv_spawns_without_a_preexec_function() -> None:
    argv, preexec = tied_to_parent(["true"])
    if preexec is None:  # the cheap path: setpriv execs the tool with the signal set
        assert argv[1:] == ["--pdeathsig", "KILL", "--", "true"]
    else:
        assert argv == ["true"]
    assert subprocess.run(argv, preexec_fn=preexec).returncode == 0
