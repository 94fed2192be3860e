"""One process group for `run_stack`'s children, and a guard that empties it.

`manage.py run_stack` starts web, worker, beat and the simulators, and the Celery
worker starts its own prefork pool processes. However run_stack ends - Ctrl-C,
SIGTERM, a crashed child, SIGKILL - none of them may outlive it, or they keep its
ports and its database. Three layers, each covering the gap of the one before:

1. Orderly stop: on SIGINT/SIGTERM/SIGHUP, or when a child dies, run_stack stops
   the children in order and SIGKILLs whatever is left of the group after a
   grace period (`ProcessGroup.stop`).
2. Parent-death signal: every direct child is started with PR_SET_PDEATHSIG =
   SIGTERM (Linux), so the kernel asks it to stop the moment run_stack dies, even
   by SIGKILL. The setting is not inherited across fork, so it does not reach
   grandchildren (billiard sets its own on the pool processes).
3. The guard: every child joins one process group led by this module run as
   `python -m core.process_group`, which blocks reading a pipe only run_stack
   holds. When run_stack is gone the read returns EOF; the guard SIGTERMs the
   group's top processes, waits a grace period for the group to empty and
   SIGKILLs what is left - grandchildren and hung children included.

A process that leaves the group (setsid, setpgid) escapes layer 3; none of the
stack's do (runserver runs with --noreload, the worker is not --detach'ed).
This module imports nothing from Django: the guard is a bare interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
GUARD_GRACE_SECONDS = 5.0


def parent_death_signal(sig: signal.Signals) -> Callable[[], None]:
    """A Popen ``preexec_fn`` that makes the child receive `sig` when its parent dies.

    Linux only (elsewhere it does nothing and the guard alone covers the case).
    The kernel sends the signal when the *thread* that forked the child exits, so
    start children from the main thread, and start them before any other thread
    exists: preexec_fn runs between fork and exec, where another thread's lock
    could be held.
    """
    parent = os.getpid()
    prctl = _libc_prctl()

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def _libc_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def describe_exit(name: str, returncode: int) -> str:
    """`worker exited with code -9 (killed by SIGKILL)`: the name, the code, and the
    signal when a signal ended it."""
    text = f"{name} exited with code {returncode}"
    if returncode < 0:
        try:
            text += f" (killed by {signal.Signals(-returncode).name})"
        except ValueError:
            text += f" (killed by signal {-returncode})"
    return text


def group_members(pgid: int) -> dict[int, int] | None:
    """Live (non-zombie) processes of a process group, as {pid: parent pid}.

    None where /proc is not available (not Linux)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    members: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        state, ppid, pgrp = fields[0], int(fields[1]), int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members[int(entry.name)] = ppid
    return members


class ProcessGroup:
    """run_stack's children: one process group, led by the guard.

    `start` children from the main thread before starting any other thread (see
    `parent_death_signal`); `stop` or `kill` before leaving.
    """

    def __init__(self, *, grace: float = GUARD_GRACE_SECONDS) -> None:
        self.guard = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "core.process_group", "--grace", str(grace)],
            stdin=subprocess.PIPE,  # the lifeline: only we hold its write end
            cwd=Path(__file__).resolve().parent.parent,
            process_group=0,  # leads a new group; its pid is the group id
        )
        self.pgid = self.guard.pid
        self.children: dict[str, subprocess.Popen[str]] = {}

    def start(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """``env`` is added to this process's environment for that child only (secrets
        go there, not into ``argv``, which every local user can read)."""
        child = subprocess.Popen(  # noqa: S603 (our own interpreter and fixed arguments)
            argv,
            env={**os.environ, **env} if env else None,
            stdin=subprocess.DEVNULL,  # a background group reading the terminal would stop
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            process_group=self.pgid,  # Ctrl-C reaches only us; we stop the children in order
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
        self.children[name] = child
        return child

    def first_exit(self) -> tuple[str, int] | None:
        """(name, returncode) of a child (or the guard) that has exited, if any."""
        for name, child in self.children.items():
            if child.poll() is not None:
                return name, child.returncode
        if self.guard.poll() is not None:
            return "guard", self.guard.returncode
        return None

    def stop(self, order: Sequence[Sequence[str]], *, timeout: float) -> None:
        """SIGTERM the children stage by stage, each stage once the one before has
        exited; SIGKILL the whole group (grandchildren too) at `timeout`."""
        deadline = time.monotonic() + timeout
        for stage in order:
            running = [
                self.children[name]
                for name in stage
                if name in self.children and self.children[name].poll() is None
            ]
            for child in running:
                child.send_signal(signal.SIGTERM)
            for child in running:
                try:
                    child.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    break
        while self._others() and time.monotonic() < deadline:  # grandchildren
            time.sleep(0.1)
        self.kill()

    def kill(self) -> None:
        """SIGKILL whatever is left of the group, then let the guard go."""
        if self._others():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
        for child in self.children.values():
            if child.poll() is None:  # only if it left the group; ours do not
                child.kill()
            child.wait()
        if self.guard.stdin is not None and not self.guard.stdin.closed:
            self.guard.stdin.close()  # EOF: the guard finds the group empty and exits
        try:
            self.guard.wait(timeout=GUARD_GRACE_SECONDS * 2)
        except subprocess.TimeoutExpired:
            self.guard.kill()
            self.guard.wait()

    def kill_now(self) -> None:
        """SIGKILL the whole group at once (a second Ctrl-C); safe in a signal handler."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)

    def _others(self) -> bool:
        """Is anything but the guard left in the group?"""
        members = group_members(self.pgid)
        if members is None:
            return any(child.poll() is None for child in self.children.values())
        return any(pid != self.guard.pid for pid in members)


def guard(grace: float) -> None:
    """Wait for the parent to be gone (EOF on stdin), then empty the process group."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        while os.read(0, 4096):  # the parent never writes; EOF means it is gone
            pass
    except OSError:
        pass
    me, pgid = os.getpid(), os.getpgrp()
    members = group_members(pgid)
    if members is None:  # no /proc: signal the group blindly
        os.killpg(pgid, signal.SIGTERM)
        time.sleep(grace)
        os.killpg(pgid, signal.SIGKILL)
        return
    members.pop(me, None)
    if not members:
        return
    # The top processes are the ones whose parent (run_stack) left the group; they
    # stop their own children. The kernel already sent them SIGTERM on Linux, a
    # second one changes nothing for them.
    _say(f"run_stack is gone; stopping {len(members)} process(es) it left behind")
    for pid, ppid in members.items():
        if ppid not in members:
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while members and time.monotonic() < deadline:
        time.sleep(0.1)
        members = group_members(pgid) or {}
        members.pop(me, None)
    if members:
        _say(f"killing {len(members)} process(es) still running after {grace:g} s")
        os.killpg(pgid, signal.SIGKILL)  # the guard goes with them


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _say(message: str) -> None:
    with contextlib.suppress(OSError):  # run_stack's output may have gone with it
        print(f"{'guard':>10} | {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=guard.__doc__)
    parser.add_argument("--grace", type=float, default=GUARD_GRACE_SECONDS)
    guard(parser.parse_args(argv).grace)


if __name__ == "__main__":
    main()
