"""Paths outside the workspace and files that cannot be text are refused, changing nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from delegation_machine.engine.state import FileRefused, PathRefused, WorkspaceState


def test_resolve_accepts_relative_and_absolute_paths(
    state: WorkspaceState, workspace: Path
) -> None:
    assert state.resolve("pkg/mod.py") == "pkg/mod.py"
    assert state.resolve(str(workspace / "pkg" / "mod.py")) == "pkg/mod.py"
    assert state.resolve("pkg/../pkg/mod.py") == "pkg/mod.py"


@pytest.mark.parametrize("path", ["../outside.py", "pkg/../../x", "/etc/passwd", ""])
def test_paths_outside_the_workspace_are_refused(state: WorkspaceState, path: str) -> None:
    with pytest.raises(PathRefused) as caught:
        state.resolve(path)
    assert caught.value.reason


def test_private_folder_is_refused(state: WorkspaceState) -> None:
    with pytest.raises(PathRefused, match=r"\.delegation"):
        state.resolve(".delegation/ledger.sqlite3")


def test_symlink_that_escapes_is_refused(
    state: WorkspaceState, workspace: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, workspace / "link.txt")
    os.symlink(tmp_path, workspace / "dirlink")
    with pytest.raises(PathRefused, match="symlink"):
        state.resolve("link.txt")
    with pytest.raises(PathRefused, match="symlink"):
        state.read("dirlink/secret.txt")


def test_symlink_inside_the_workspace_is_allowed(state: WorkspaceState, workspace: Path) -> None:
    os.symlink(workspace / "pkg" / "mod.py", workspace / "alias.py")
    assert state.resolve("alias.py") == "alias.py"


def test_binary_file_is_refused_with_the_offset(state: WorkspaceState, workspace: Path) -> None:
    (workspace / "blob.bin").write_bytes(b"abc\x00def")
    with pytest.raises(FileRefused, match="binary") as caught:
        state.read("blob.bin")
    assert "offset 3" in caught.value.reason
    assert state.loaded_paths() == []


def test_non_utf8_file_is_refused(state: WorkspaceState, workspace: Path) -> None:
    (workspace / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(FileRefused, match="not UTF-8"):
        state.read("latin1.txt")
    assert (workspace / "latin1.txt").read_bytes() == b"caf\xe9"


def test_file_over_the_size_limit_is_refused(workspace: Path) -> None:
    small = WorkspaceState(workspace, max_file_bytes=10, persist=False)
    (workspace / "big.txt").write_text("x" * 11)
    with pytest.raises(FileRefused, match="over the limit of 10 bytes"):
        small.read("big.txt")


def test_default_limit_is_five_megabytes(workspace: Path) -> None:
    assert WorkspaceState(workspace, persist=False).max_file_bytes == 5_000_000


def test_missing_file_is_refused(state: WorkspaceState) -> None:
    with pytest.raises(FileRefused, match="no such file"):
        state.read("nope.py")
