"""Debian packages the tests need (Emacs, chromium, redis-server), installed by the test set-up.

Owns `install_debian_packages`, shared by tests/e2e and tests/scale: apt-get as root or through
password-less sudo, waiting for a dpkg lock another install holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

APT_TIMEOUT_S = 540


def apt_get(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """One apt-get run, non-interactive, waiting for a dpkg lock another install holds."""
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=300", *arguments]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
    )


def install_debian_packages(packages: list[str]) -> None:
    """apt-get install `packages`; refreshes the package lists once if they are stale.

    Skips only where this set-up cannot install at all (no apt-get, or neither root nor
    password-less sudo); an install that can run but fails fails the test, with apt's output.
    """
    if shutil.which("apt-get") is None:
        pytest.skip(f"no apt-get to install {' '.join(packages)} (Debian packages)")
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], check=False).returncode:
        pytest.skip(f"apt-get needs root or password-less sudo to install {' '.join(packages)}")
    install = ["install", "-y", "--no-install-recommends", *packages]
    done = apt_get(install)
    if done.returncode != 0:
        updated = apt_get(["update"])
        assert updated.returncode == 0, f"apt-get update failed:\n{updated.stderr[-3000:]}"
        done = apt_get(install)
    assert done.returncode == 0, f"apt-get install {packages} failed:\n{done.stderr[-3000:]}"
