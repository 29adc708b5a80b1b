"""The sandbox's launcher: the command's whole process tree ends with it, `setsid()` included.

Owns `REAPER_SOURCE`, a program the sandbox runs with `python -I -S -c` in front of the real
command. Started in a fresh PID namespace (where the kernel allows it), its one child, the
command, is that namespace's init: when it exits or is killed, the kernel kills every process
left in the namespace, whatever session or group it moved to. Everywhere it is also a child
subreaper (`PR_SET_CHILD_SUBREAPER`): orphans are re-parented to it, and once the command has
exited it kills and reaps every descendant it still has. The command dies with the launcher
(`PR_SET_PDEATHSIG`), and the launcher exits the way the command did (its code or signal).
SIGTERM makes it kill the command at once (the sandbox's timeout).
"""

from __future__ import annotations

REAPER_SOURCE = r"""
import ctypes, os, signal, sys

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
me = os.getpid()


def children():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                found.append(int(entry))
    return found


def sweep():
    while True:
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


argv = sys.argv[1:]
command = os.fork()
if command == 0:
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() not in (me, 0):  # 0: the init of a new PID namespace sees no parent
        os._exit(1)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"cannot run {argv[0]}: {exc.strerror}\n".encode())
    os._exit(127)
signal.signal(signal.SIGTERM, lambda *_: os.kill(command, signal.SIGKILL))
_, status = os.waitpid(command, 0)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
sweep()
code = os.waitstatus_to_exitcode(status)
if code < 0:
    if -code != signal.SIGKILL:
        signal.signal(-code, signal.SIG_DFL)
    os.kill(me, -code)
os._exit(code & 0xFF)
"""
