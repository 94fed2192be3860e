"""`manage.py run_stack` leaves nothing behind, however it ends.

Each test starts the real stack (simulators, web, a Celery worker with its pool
process, beat) as a subprocess on free ports, on SQLite and the filesystem broker
in a temporary directory, waits until it is up, ends it one way, and checks that
every process it started - grandchildren included - is gone and its ports are
free. The deadlines are generous ceilings for a loaded machine, not timings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.e2e

UP_TIMEOUT = 180.0  # migrate + seed + four processes, on a busy 2-core machine
GONE_TIMEOUT = 60.0  # the guard needs ~5 s; the rest is room for load
ROLES = {"simulators", "web", "worker", "beat"}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def process_table() -> dict[int, tuple[int, str, str]]:
    """{pid: (parent pid, state, start time)} of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            table[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return table


class Stack:
    """A running `manage.py run_stack` and everything it started."""

    def __init__(self, var_dir: Path, *, block_port: int | None = None) -> None:
        self.web_port, apns, fcm, control, webpush = free_ports(5)
        self.ports = [self.web_port, apns, fcm, control, webpush]
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
        }
        env.update(
            HERALD_VAR_DIR=str(var_dir),
            HERALD_SIMULATOR_APNS_PORT=str(apns),
            HERALD_SIMULATOR_FCM_PORT=str(fcm),
            HERALD_SIMULATOR_CONTROL_PORT=str(control),
            HERALD_SIMULATOR_WEBPUSH_PORT=str(webpush),
            PYTHONUNBUFFERED="1",
        )
        self.blocker: socket.socket | None = None
        if block_port is not None:  # something else already listens there
            self.blocker = socket.socket()
            self.blocker.bind(("127.0.0.1", self.ports[block_port]))
            self.blocker.listen()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(settings.BASE_DIR / "manage.py"),
                "run_stack",
                "--port",
                str(self.web_port),
                "--users",
                "2",
                "--concurrency",
                "1",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.seen: dict[int, str] = {}  # every descendant ever seen: pid -> start time
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def children(self) -> dict[str, int]:
        """The direct children by role, from their command lines."""
        roles = {
            "process_group": "guard",
            "run_simulators": "simulators",
            "runserver": "web",
            " worker ": "worker",
            " beat ": "beat",
        }
        found = {}
        for pid, (ppid, _state, _start) in process_table().items():
            if ppid == self.process.pid:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                for marker, role in roles.items():
                    if marker in cmdline.decode():
                        found[role] = pid
        return found

    def descendants(self) -> dict[int, str]:
        """Live descendants of run_stack (and of its reparented children seen before)."""
        table = process_table()
        roots = {self.process.pid, *self.seen}
        found: dict[int, str] = {}
        changed = True
        while changed:
            changed = False
            for pid, (ppid, state, start) in table.items():
                if pid in found or state in ("Z", "X"):
                    continue
                known = pid in self.seen and self.seen[pid] == start
                if known or (ppid in roots and ppid != pid) or ppid in found:
                    found[pid] = start
                    changed = True
        found.pop(self.process.pid, None)
        self.seen.update(found)
        return found

    def wait_up(self) -> None:
        """Until the banner is out, the worker is ready and its pool process exists."""
        deadline = time.monotonic() + UP_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output
            children = self.children()
            pool = [
                pid
                for pid, (ppid, _s, _t) in process_table().items()
                if ppid == children.get("worker")
            ]
            if (
                "Herald is running" in self.output
                and "ready." in self.output
                and set(children) >= ROLES
                and pool
            ):
                self.descendants()
                return
            time.sleep(0.5)
        raise AssertionError(f"run_stack did not come up:\n{self.output}")

    def wait_exit(self) -> int:
        return self.process.wait(timeout=GONE_TIMEOUT)

    def wait_all_gone(self) -> tuple[dict[int, str], list[int]]:
        """(descendants still alive, ports still taken) once all are gone or at the deadline."""
        deadline = time.monotonic() + GONE_TIMEOUT
        # The port this test itself holds (block_port) stays taken: not the stack's.
        blocked = {self.blocker.getsockname()[1]} if self.blocker is not None else set()
        while True:
            alive = self.descendants()
            taken = [p for p in self.ports if p not in blocked and not port_is_free(p)]
            if (not alive and not taken) or time.monotonic() > deadline:
                return alive, taken
            time.sleep(0.2)

    def clean_up(self) -> None:
        """SIGKILL, by pid, whatever this stack left behind (so a failure leaks nothing)."""
        if self.blocker is not None:
            self.blocker.close()
        if self.process.poll() is None:
            self.process.kill()
        for pid in self.descendants():  # checked by pid and start time
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite database and broker directory for the module (migrated once)."""
    return tmp_path_factory.mktemp("run_stack")


@pytest.fixture
def start_stack(var_dir: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def start(**kwargs: int) -> Stack:
        stack = Stack(var_dir, **kwargs)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.clean_up()


def test_sigkill_of_run_stack_takes_every_child_and_grandchild_with_it(
    start_stack: Callable[..., Stack],
) -> None:
    stack = start_stack()
    stack.wait_up()
    children = stack.children()
    assert set(children) >= ROLES
    pool = set(stack.descendants()) - {*children.values()}
    assert len(pool) == 1  # the worker's prefork pool process (--concurrency 1)
    # The simulators play the demo's devices, with a key passed by environment only.
    assert (
        "   Device events   device behaviour on: 60% of pushes opened, 30% of those "
        'clicked, 20% send "purchase"\n'
    ) in stack.output
    simulators = children["simulators"]
    argv = Path(f"/proc/{simulators}/cmdline").read_bytes().split(b"\0")
    url = f"http://127.0.0.1:{stack.web_port}/v1/projects/".encode()
    assert argv[argv.index(b"--report-url") + 1].startswith(url)
    assert not [arg for arg in argv if b"hk_" in arg]
    environ = Path(f"/proc/{simulators}/environ").read_bytes().split(b"\0")
    [device_key] = [v[22:] for v in environ if v.startswith(b"HERALD_REPORT_API_KEY=")]
    assert device_key.startswith(b"hk_") and device_key.decode() not in stack.output

    stack.process.kill()

    assert stack.wait_exit() == -signal.SIGKILL
    alive, taken = stack.wait_all_gone()
    assert (alive, taken) == ({}, [])


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_supervisor_stop_takes_everything_even_a_hung_child(
    start_stack: Callable[..., Stack], first: signal.Signals
) -> None:
    """SIGTERM (or Ctrl-C), then SIGKILL a second later, as a supervisor does, while
    the worker hangs (stopped, so it cannot act on its SIGTERM)."""
    stack = start_stack()
    stack.wait_up()
    os.kill(stack.children()["worker"], signal.SIGSTOP)

    stack.process.send_signal(first)
    time.sleep(1)  # the supervisor's patience, not an assertion
    stack.process.kill()

    stack.wait_exit()
    alive, taken = stack.wait_all_gone()
    assert (alive, taken) == ({}, [])


def test_a_crashed_child_is_named_with_its_exit_code_and_the_rest_stopped(
    start_stack: Callable[..., Stack],
) -> None:
    stack = start_stack()
    stack.wait_up()

    os.kill(stack.children()["worker"], signal.SIGKILL)

    assert stack.wait_exit() == 1
    assert "worker exited with code -9 (killed by SIGKILL); stopped the rest." in stack.output
    alive, taken = stack.wait_all_gone()
    assert (alive, taken) == ({}, [])


def test_a_child_failing_at_start_is_named_and_the_rest_stopped(
    start_stack: Callable[..., Stack],
) -> None:
    stack = start_stack(block_port=1)  # the APNs simulator's port is taken

    assert stack.wait_exit() == 1
    assert "simulators exited with code 1; stopped the rest." in stack.output
    alive, _taken = stack.wait_all_gone()
    assert alive == {}
