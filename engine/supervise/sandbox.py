"""Run untrusted checks on a shadow copy of the workspace, contained.

Owns `ShadowWorkspace` (a copy of the workspace in the owner's `.delegation/tmp/` with the CRDT
texts written over it; the user's files are never touched) and `run_sandboxed` (one command
behind a launcher that ends its whole process tree, `setsid()` included, with a timeout,
rlimits, a scrubbed environment, capped output and, where the kernel allows it, no network,
a read-only workspace, private temp folders and, for a root parent, `nobody` without any
capability). Invariant: a sandboxed run always returns a `SandboxResult`; containment that
could not be applied is reported, never assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import fnmatch
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from io import BufferedReader
from pathlib import Path
from typing import cast

import msgspec

from delegation_machine.engine.state.scratch import make_scratch_dir
from delegation_machine.engine.supervise.child_view import ChildView
from delegation_machine.engine.supervise.lifetime import die_with_parent
from delegation_machine.engine.supervise.reaper import REAPER_SOURCE

# Environment variables whose names match these patterns never reach a sandboxed process.
SECRET_NAME_PATTERNS = ("*KEY*", "*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*CREDENTIAL*")
PROVIDER_VARIABLES = frozenset(
    {
        "OPENAI_ORG_ID",
        "OPENAI_ORGANIZATION",
        "OPENAI_BASE_URL",
        "ANTHROPIC_BASE_URL",
        "AZURE_OPENAI_ENDPOINT",
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "SEMGREP_APP_TOKEN",
        "NETRC",
        "SSH_AUTH_SOCK",
        "GPG_AGENT_INFO",
        "DOCKER_AUTH_CONFIG",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
    }
)
# Only these pass through unchanged; everything else is dropped (an allow-list is safer than
# a deny-list, the deny patterns above are a second fence for names added by `extra`).
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "SYSTEMROOT")

# Folders never copied into a shadow workspace: caches, VCS data and virtual environments.
SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "env",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        "build",
        "dist",
        ".delegation",
    }
)

_CLONE_NEWNS = 0x00020000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CAP_LAST = 63
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# statvfs f_flag bits -> mount flags that a read-only remount must keep (locked in a userns).
_KEPT_MOUNT_FLAGS = {2: 2, 4: 4, 8: 8, 1024: 1024, 2048: 2048, 4096: 1 << 21}
# RLIMIT_NPROC is not enforced for uid 0; a root parent runs limited children as this user.
UNPRIVILEGED_UID = 65534
UNPRIVILEGED_GID = 65534
_DRAIN_GRACE_S = 2.0
_SWEEP_GRACE_S = 2.0  # for the launcher to kill what is left of the tree after a timeout


class SandboxLimits(msgspec.Struct, frozen=True):
    """Resource limits of one sandboxed run; `None` leaves that limit as inherited."""

    timeout_s: float = 60.0
    cpu_s: int | None = 60
    address_space_bytes: int | None = 4 << 30
    file_size_bytes: int | None = 64 << 20
    max_processes: int | None = 256
    open_files: int | None = 1024
    output_bytes: int = 1 << 20
    isolate_network: bool = True
    protect_paths: tuple[str, ...] = ()  # made read-only for the child where the kernel allows
    # Folders the child must reach (its shadow copy...) when the rest is hidden; the working
    # folder and the interpreter are always reachable. `private_tmp`: /tmp, /var/tmp, /dev/shm
    # and /root are empty private tmpfs mounts for the child (where namespaces work).
    reachable_paths: tuple[str, ...] = ()
    private_tmp: bool = True


class SandboxResult(msgspec.Struct, frozen=True):
    """What one sandboxed run did. `returncode` is None when it never started."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    output_truncated: bool = False
    network_isolated: bool = False
    paths_protected: bool = False
    private_tmp: bool = False  # /tmp, /var/tmp, /dev/shm were private to the run
    start_error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class IsolationSupport(msgspec.Struct, frozen=True):
    """What containment this kernel and user allow; `reason` says why a part is missing."""

    namespaces: bool
    read_only_mounts: bool
    process_limit_enforced: bool
    reason: str = ""
    private_views: bool = False  # private temp folders, root-only homes hidden, a PID namespace


def scrub_environment(
    environ: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """An environment with no secrets: an allow-list of harmless variables plus `extra`.

    Names in `extra` that look like secrets are dropped too, so a caller cannot leak a key by
    accident.
    """
    kept = {name: environ[name] for name in PASSED_THROUGH if name in environ}
    kept.update(extra or {})
    return {name: value for name, value in kept.items() if not looks_secret(name)}


def looks_secret(name: str) -> bool:
    upper = name.upper()
    if upper in PROVIDER_VARIABLES:
        return True
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET_NAME_PATTERNS)


# --- the shadow workspace ---------------------------------------------------------------------


class ShadowWorkspace:
    """A temporary copy of the workspace with the given texts materialised over it.

    `root` is the copy (`<temp>/workspace`), so relative escapes such as `../x` land in the
    temporary folder, which is deleted on `cleanup()`.
    """

    def __init__(self, base: Path, root: Path) -> None:
        self._base = base
        self.root = root

    @classmethod
    def materialise(
        cls,
        files: Mapping[str, str],
        *,
        source_root: Path | None = None,
        copy_suffixes: Iterable[str] | None = None,
        max_copied_bytes: int = 200 << 20,
    ) -> ShadowWorkspace:
        """Copy `source_root` (if given; only `copy_suffixes` when given) and write `files`."""
        base = make_scratch_dir("dm-shadow-")  # the owner's .delegation/tmp, not /tmp
        root = base / "workspace"
        root.mkdir()
        shadow = cls(base, root)
        try:
            if source_root is not None:
                _copy_tree(source_root, root, _suffix_filter(copy_suffixes), max_copied_bytes)
            for rel, text in files.items():
                target = shadow.path_of(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8", newline="")
        except BaseException:
            shadow.cleanup()
            raise
        return shadow

    def path_of(self, rel: str) -> Path:
        """The shadow path of a workspace-relative path; refuses paths that escape the copy."""
        candidate = (self.root / rel).resolve()
        if not candidate.is_relative_to(self.root.resolve()):
            raise ValueError(f"path {rel!r} escapes the workspace")
        return candidate

    def relative(self, path: str | Path) -> str:
        """Map a path inside the copy back to a workspace-relative POSIX path."""
        resolved = Path(path)
        if not resolved.is_absolute():
            resolved = self.root / resolved
        return resolved.resolve().relative_to(self.root.resolve()).as_posix()

    @property
    def base(self) -> Path:
        """The private folder holding the copy (`root`) and the run's own files."""
        return self._base

    def cleanup(self) -> None:
        shutil.rmtree(self._base, ignore_errors=True)

    def __enter__(self) -> ShadowWorkspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


def _suffix_filter(suffixes: Iterable[str] | None) -> Callable[[str], bool]:
    if suffixes is None:
        return lambda name: True
    wanted = tuple(suffixes)
    return lambda name: name.endswith(wanted)


def _copy_tree(source: Path, target: Path, wanted: Callable[[str], bool], budget: int) -> None:
    """Copy regular files (no symlinks, no skipped folders) until `budget` bytes are used."""
    copied = 0
    for folder, subfolders, names in os.walk(source):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED_FOLDERS]
        relative_folder = Path(folder).relative_to(source)
        for name in names:
            origin = Path(folder) / name
            if origin.is_symlink() or not origin.is_file() or not wanted(name):
                continue
            size = origin.stat().st_size
            if copied + size > budget:
                continue
            destination = target / relative_folder / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(origin, destination)
            copied += size


# --- containment detection --------------------------------------------------------------------


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None or not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(name, use_errno=True)


_PROBE = """
import os, sys
try:
    open(sys.argv[1], "w").close()
    wrote = 1
except OSError:
    wrote = 0
read_end, write_end = os.pipe()
children = 0
try:
    for _ in range(int(sys.argv[2])):
        if os.fork() == 0:
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        children += 1
except OSError:
    pass
os.close(write_end)
for _ in range(children):
    os.wait()
print(wrote, children)
"""


_PRIVATE_PROBE = """
import os, sys
tmp = os.listdir("/tmp")
print(len(tmp), int(os.path.exists(sys.argv[3])))
"""


@functools.cache
def detect_isolation() -> IsolationSupport:
    """Probe once whether namespaces, private views (temp folders, a PID namespace),
    read-only bind mounts and RLIMIT_NPROC work here; each level that fails falls back to
    the next weaker one, with the reason."""
    if _libc() is None:
        return IsolationSupport(False, False, False, "not Linux or no libc: no namespaces")
    probe_dir = make_scratch_dir("dm-probe-")
    hand_to_sandbox(probe_dir)
    limits = SandboxLimits(max_processes=8, protect_paths=(str(probe_dir / "protected"),))
    (probe_dir / "protected").mkdir()
    marker = Path("/tmp") / f".dm-probe-{os.getpid()}"  # must not be visible to the child
    with contextlib.suppress(OSError):
        marker.touch()
    argv = [sys.executable, "-c", _PROBE, str(probe_dir / "protected" / "written"), "32"]
    reasons = []
    try:
        for namespaces, views in ((True, True), (True, False), (False, False)):
            plan = ContainmentPlan(
                limits, namespaces=namespaces, views=views, pid_namespace=views, cwd=probe_dir
            )
            if views and plan.view is None:
                reasons.append("no /dev/shm to stage a private view of the file system")
                continue
            try:
                completed = subprocess.run(
                    argv,
                    preexec_fn=plan.apply_in_child,
                    capture_output=True,
                    timeout=30,
                    env=scrub_environment(os.environ),
                )
                if views:
                    private = subprocess.run(
                        [sys.executable, "-c", _PRIVATE_PROBE, "", "", str(marker)],
                        preexec_fn=plan.apply_in_child,
                        capture_output=True,
                        timeout=30,
                        env=scrub_environment(os.environ),
                        cwd=probe_dir,
                    )
                    if private.returncode != 0 or private.stdout.split()[1:] != [b"0"]:
                        reasons.append("the private view of /tmp did not work")
                        continue
            except (OSError, subprocess.SubprocessError) as exc:
                what = "private views" if views else "namespaces"
                reasons.append(f"{what} unavailable ({exc})")
                continue
            if completed.returncode != 0:
                reasons.append(f"the sandbox probe failed: {completed.stderr[-300:]!r}")
                continue
            wrote, children = (int(x) for x in completed.stdout.split())
            if not namespaces:
                reasons.append("no namespaces: network and workspace are not isolated")
            elif wrote:
                reasons.append("bind mounts could not be made read-only")
            if children >= 32:
                reasons.append("RLIMIT_NPROC is not enforced for this user")
            return IsolationSupport(
                namespaces,
                namespaces and not wrote,
                children < 32,
                "; ".join(reasons),
                private_views=views,
            )
    finally:
        marker.unlink(missing_ok=True)
        shutil.rmtree(probe_dir, ignore_errors=True)
    return IsolationSupport(False, False, False, "; ".join(reasons) or "sandbox probe failed")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def hand_to_sandbox(path: Path) -> None:
    """Make `path` (recursively) writable by sandboxed children: when this process is root they
    run as nobody (see ContainmentPlan), so the shadow copy must belong to nobody."""
    if os.geteuid() != 0:
        return
    os.chown(path, UNPRIVILEGED_UID, UNPRIVILEGED_GID)
    for folder, subfolders, names in os.walk(path):
        for name in [*subfolders, *names]:
            os.chown(
                os.path.join(folder, name),
                UNPRIVILEGED_UID,
                UNPRIVILEGED_GID,
                follow_symlinks=False,
            )


class ContainmentPlan:
    """Everything the forked child does before exec, computed in the parent.

    In order: new namespaces (mount, network, with `pid_namespace` a PID namespace whose init
    is the child's first child), the private view of the file system (`ChildView`), the
    read-only workspace, rlimits, then, for a root parent, `nobody` without any capability,
    and last the parent-death signal (a change of credentials clears it).
    """

    def __init__(
        self,
        limits: SandboxLimits,
        *,
        namespaces: bool,
        views: bool = False,
        pid_namespace: bool = False,
        cwd: Path | None = None,
    ) -> None:
        self.limits = limits
        self.namespaces = namespaces
        self.is_root = os.geteuid() == 0
        self.unprivileged = self.is_root and limits.max_processes is not None
        self.libc = _libc()
        self.rlimits = _rlimit_pairs(limits)
        self.mounts = [(os.fsencode(p), _kept_flags(p)) for p in limits.protect_paths]
        self.view: ChildView | None = None
        if namespaces and views and limits.private_tmp:
            reachable = [*limits.reachable_paths, *interpreter_folders()]
            if cwd is not None:
                reachable.append(str(cwd))
            view = ChildView(
                reachable,
                protected=limits.protect_paths,
                child_uid=UNPRIVILEGED_UID if self.unprivileged else None,
                child_gid=UNPRIVILEGED_GID if self.unprivileged else None,
            )
            self.view = view if view.available else None
        self.pid_namespace = pid_namespace and self.view is not None
        # Without a private view a root-only interpreter (/root/.pyenv) is reachable only
        # with CAP_DAC_READ_SEARCH: then, and only then, the child keeps that one capability.
        self.keep_read_search = self.unprivileged and self.view is None
        self.die_with_parent = die_with_parent()

    @property
    def private_tmp(self) -> bool:
        return self.view is not None

    def apply_in_child(self) -> None:
        if self.namespaces and self.libc is not None:
            self._enter_namespaces(self.libc)
        for which, value in self.rlimits:
            resource.setrlimit(which, (value, value))
        if self.unprivileged and self.libc is not None:
            self._become_unprivileged(self.libc)
        self.die_with_parent()  # a kill -9 of the engine takes this child with it

    def _become_unprivileged(self, libc: ctypes.CDLL) -> None:
        """Run as `nobody` with no capability at all (none permitted, none in the bounding
        set, no new privileges through set-user-ID programs): root-only files such as
        /etc/shadow stay closed. The kernel exempts uid 0 from RLIMIT_NPROC, another reason.
        Files the child creates belong to nobody, so shells (which drop privileges when
        uid != euid) and programs they start can still write inside the shadow copy."""
        kept = _CAP_DAC_READ_SEARCH if self.keep_read_search else None
        for capability in range(_CAP_LAST + 1):
            if capability != kept:
                libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)  # EINVAL past the last one
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "setting no_new_privs failed")
        if kept is not None:
            libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
        os.setgroups([])
        os.setresgid(UNPRIVILEGED_GID, UNPRIVILEGED_GID, UNPRIVILEGED_GID)
        os.setresuid(UNPRIVILEGED_UID, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        if kept is None:
            return  # no keep-caps: changing every uid from 0 cleared all capabilities
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        keep = 1 << kept
        data = (_CapData * 2)(_CapData(keep, keep, keep), _CapData(0, 0, 0))
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
        if libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, kept, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "raising the ambient capability failed")

    def _enter_namespaces(self, libc: ctypes.CDLL) -> None:
        flags = _CLONE_NEWNS
        if self.limits.isolate_network:
            flags |= _CLONE_NEWNET
        if not self.is_root:
            flags |= _CLONE_NEWUSER
        if self.pid_namespace:
            flags |= _CLONE_NEWPID
        if libc.unshare(flags) != 0:
            raise OSError(ctypes.get_errno(), "unshare failed")
        if not self.mounts and self.view is None:
            return
        if libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "making mounts private failed")
        if self.view is not None:
            self.view.stage(libc, early=True)
        for path, kept in self.mounts:
            if libc.mount(path, path, None, _MS_BIND | _MS_REC, None) != 0:
                raise OSError(ctypes.get_errno(), "bind mount failed")
            remount = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept
            if libc.mount(None, path, None, remount, None) != 0:
                raise OSError(ctypes.get_errno(), "read-only remount failed")
        if self.view is not None:
            self.view.stage(libc, early=False)
            self.view.hide_and_restore(libc)


@functools.cache
def interpreter_folders() -> tuple[str, ...]:
    """The folders a child running this interpreter must reach (the virtual environment, the
    base installation and the folder of the executable itself)."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    folders.add(os.path.dirname(os.path.realpath(sys.executable)))
    return tuple(sorted(os.path.realpath(f) for f in folders if f))


def _rlimit_pairs(limits: SandboxLimits) -> list[tuple[int, int]]:
    wanted = [
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_AS, limits.address_space_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NPROC, limits.max_processes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    pairs = []
    for which, value in wanted:
        if value is None:
            continue
        _, hard = resource.getrlimit(which)
        pairs.append((which, value if hard == resource.RLIM_INFINITY else min(value, hard)))
    return pairs


def _kept_flags(path: str) -> int:
    try:
        current = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(mount for stat_bit, mount in _KEPT_MOUNT_FLAGS.items() if current & stat_bit)


# --- running one command ----------------------------------------------------------------------


async def run_sandboxed(
    argv: Sequence[str],
    *,
    cwd: Path,
    limits: SandboxLimits | None = None,
    env: Mapping[str, str] | None = None,
) -> SandboxResult:
    """Run `argv` contained; kill its whole process group on timeout, exit or cancellation.

    `env` is merged into a scrubbed copy of this process's environment (secrets dropped).
    The waiting happens in a worker thread: asyncio's own subprocess wait also waits for the
    pipes, which a forked grandchild can hold open for ever.
    """
    limits = limits or SandboxLimits()
    support = detect_isolation()
    environment = scrub_environment(os.environ, env)
    program = _runnable(argv[0], environment.get("PATH", os.defpath))
    if program is None:
        error = f"{argv[0]}: no such executable file"
        return SandboxResult(tuple(argv), None, "", "", 0.0, start_error=error)
    if support.private_views:  # the program's own folder stays reachable
        folders = (*limits.reachable_paths, os.path.dirname(os.path.realpath(program)))
        limits = msgspec.structs.replace(limits, reachable_paths=folders)
    plan = ContainmentPlan(
        limits,
        namespaces=support.namespaces,
        views=support.private_views,
        pid_namespace=True,
        cwd=cwd,
    )
    launcher = [sys.executable, "-I", "-S", "-c", REAPER_SOURCE, *argv]  # ends the whole tree
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            launcher,
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=plan.apply_in_child,
            start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return SandboxResult(tuple(argv), None, "", "", 0.0, start_error=str(exc))
    try:
        outcome = await asyncio.to_thread(_wait_contained, proc, limits)
    except BaseException:
        _kill_group(proc.pid)  # a cancelled caller must not leave the group running
        raise
    return SandboxResult(
        argv=tuple(argv),
        returncode=proc.returncode,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        duration_s=time.monotonic() - started,
        timed_out=outcome.timed_out,
        output_truncated=outcome.truncated,
        network_isolated=support.namespaces and limits.isolate_network,
        paths_protected=support.read_only_mounts and bool(limits.protect_paths),
        private_tmp=plan.private_tmp,
    )


def _runnable(program: str, search_path: str) -> str | None:
    """The executable file `program` names, or None: said before anything is forked."""
    if os.sep in program:
        found: str | None = program if os.access(program, os.X_OK) else None
    else:
        found = shutil.which(program, path=search_path)
    return found if found is not None and os.path.isfile(found) else None


class _Waited(msgspec.Struct, frozen=True):
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool


def _wait_contained(proc: subprocess.Popen[bytes], limits: SandboxLimits) -> _Waited:
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        _CappedReader(cast(BufferedReader, stream), limits.output_bytes)
        for stream in (proc.stdout, proc.stderr)
    ]
    timed_out = False
    try:
        proc.wait(timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # the launcher kills the command, then its tree
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_SWEEP_GRACE_S)
    finally:
        # Descendants left in the group would keep running and keep the pipes open.
        _kill_group(proc.pid)
        proc.wait()
    for reader in readers:
        reader.join(_DRAIN_GRACE_S)
    out, err = readers
    return _Waited(out.text(), err.text(), timed_out, out.truncated or err.truncated)


class _CappedReader:
    """Reads a pipe to EOF in a daemon thread, keeping at most `cap` bytes (then draining)."""

    def __init__(self, stream: BufferedReader, cap: int) -> None:
        self._stream = stream
        self._cap = cap
        self._kept = bytearray()
        self.truncated = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := self._stream.read1(65536):
                room = self._cap - len(self._kept)
                if len(chunk) > room:
                    self.truncated = True
                self._kept += chunk[: max(room, 0)]
        # Closed here, by the thread that read it to its end: a pipe left for the garbage
        # collector leaks its descriptor until then, and its ResourceWarning fires inside
        # whatever allocation set the collection off.
        with contextlib.suppress(OSError):
            self._stream.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            # A process outside the group still holds the pipe: stop waiting for it.
            self.truncated = True

    def text(self) -> str:
        return bytes(self._kept).decode("utf-8", errors="replace")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
