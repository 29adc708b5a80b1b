"""Each sandboxed test under its own deadline, so one slow test cannot hide the others' results.

Owns `install_deadline_plugin`: it writes a small pytest plugin into the run's private folder
and returns the argv and environment that load it. In the child, every test phase (setup,
call, teardown) is armed with a SIGALRM timer; when it fires the phase fails with "timed out
after N s" and pytest goes on with the next test, so the report still holds every other
result. The whole run keeps its own, longer timeout for a test that blocks signals.
"""

from __future__ import annotations

from pathlib import Path

PLUGIN_NAME = "dm_per_test_deadline"
DEADLINE_ENV = "DM_PER_TEST_DEADLINE_S"

PLUGIN_SOURCE = '''"""Written by the Delegation Machine sandbox: each test phase under its own deadline."""
import os
import signal

import pytest

DEADLINE_S = float(os.environ.get("DM_PER_TEST_DEADLINE_S", "0") or 0)


class _Armed:
    phase = ""


def _expired(signum, frame):
    raise pytest.fail.Exception(
        f"timed out after {DEADLINE_S:g} s in {_Armed.phase} (the sandbox's per-test deadline)",
        pytrace=False,
    )


def _armed(phase):
    if DEADLINE_S <= 0:
        return None
    _Armed.phase = phase
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
    return previous


def _disarmed(previous):
    if previous is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    previous = _armed("setup")
    try:
        yield
    finally:
        _disarmed(previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    previous = _armed("the test")
    try:
        yield
    finally:
        _disarmed(previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    previous = _armed("teardown")
    try:
        yield
    finally:
        _disarmed(previous)
'''


def install_deadline_plugin(folder: Path, deadline_s: float) -> tuple[list[str], dict[str, str]]:
    """Write the plugin into `folder` (created); the pytest arguments and the environment
    (PYTHONPATH entry and deadline) that load it in the child."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{PLUGIN_NAME}.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    return ["-p", PLUGIN_NAME], {"PYTHONPATH": str(folder), DEADLINE_ENV: f"{deadline_s:g}"}
