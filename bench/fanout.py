"""Fan-out throughput end to end: a broadcast through real Celery workers to the simulators.

    python bench/fanout.py [--tokens 100000] [--apns-share 0.5] [--webpush-share 0]
                           [--workers 1]
                           [--concurrency 2] [--keep] [--database-url URL] [--redis-url URL]
                           [--send-chunk N] [--fanout-chunk N] [--apns-concurrency N]
                           [--fcm-concurrency N] [--env KEY=VALUE ...] [--timeout S]
                           [--profile DIR] [--celery-app MODULE] [--personalized]
                           (--help for the rest)

What one run does, in order:

1. PostgreSQL + Redis (defaults below): creates the bench database if missing,
   migrates it (``manage.py migrate``), and unless ``--keep`` empties it (every
   project and what hangs off it) and flushes the bench Redis database.
2. Starts the provider simulators in their own process (``python -m
   delivery.simulators ... --json``), creates a project whose credentials point at
   them and seeds N active tokens (APNs 64-hex / FCM ~150 chars / web push
   subscriptions the simulator minted, each with an AppUser) with ``COPY``. The mix
   is ``--apns-share`` APNs, ``--webpush-share`` web push and the rest FCM.
3. Measures the *sender-alone ceiling* in this process: the real senders
   (``delivery.providers``, via bench/sender.py's ``measure_sender_ceiling``)
   against the same simulators, no database, no Celery, one process, for the same
   provider mix and the same concurrency knobs.
4. Starts ``--workers`` real ``celery -A config worker --concurrency C`` processes
   against the bench database and broker, creates a broadcast campaign and sends it
   through ``campaigns.services.campaign_send``, then polls until it is ``sent``.
5. Prints the end-to-end rate (send call -> ``sent``), time to first delivery, the
   ratio to the ceiling, peak RSS of every worker process (VmHWM plus sampled
   VmRSS), CPU seconds per component, the simulators' counts (must equal the
   tokens, no duplicates) and the final stats; the last line is a ``SUMMARY``.

Knobs reach the workers through the environment (``HERALD_SEND_CHUNK_SIZE=...
python bench/fanout.py`` or ``--send-chunk`` / ``--env KEY=VALUE``); this process
reads the same environment, so what it prints is what the workers run with.
Exit status is 0 only if the campaign reached ``sent`` with every token accepted
exactly once.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/herald_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"
PROJECT_NAME = "bench-fanout"
KNOBS = (
    "HERALD_FANOUT_CHUNK_SIZE",
    "HERALD_SEND_CHUNK_SIZE",
    "HERALD_APNS_CONCURRENCY",
    "HERALD_FCM_CONCURRENCY",
    "HERALD_PROVIDER_TIMEOUT_SECONDS",
    "HERALD_MAX_ATTEMPTS",
    "HERALD_RESULT_FLUSH_ROWS",
    "HERALD_CLAIM_LEASE_SECONDS",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str = "") -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- /proc


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:  # the process is gone (or never was)
        return ""


def proc_status_kb(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/<pid>/status (VmRSS, VmHWM); 0 if the process is gone."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, cpu seconds user+system) of a process, None if it is gone."""
    raw = _read(f"/proc/{pid}/stat")
    if not raw:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_comm(pid: int) -> str:
    return _read(f"/proc/{pid}/comm").strip()


def proc_cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(pid: int) -> list[int]:
    found = []
    for candidate in all_pids():
        stat = proc_stat(candidate)
        if stat is not None and stat[0] == pid:
            found.append(candidate)
    return found


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    values = [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


# --------------------------------------------------------------------------- processes


def stop_group(process: subprocess.Popen[Any], *, grace: float = 15.0) -> None:
    """SIGTERM the process group a child leads, SIGKILL it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> list[int]:
        return children_of(self.pid)


def start_simulators(stack: contextlib.ExitStack, cert_dir: Path) -> Any:
    """``python -m delivery.simulators`` in its own session, wrapped for bench/sender.py."""
    from bench.sender import SimulatorProcess

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "delivery.simulators",
            "--apns-port",
            "0",
            "--fcm-port",
            "0",
            "--control-port",
            "0",
            "--webpush-port",
            "0",
            "--cert-dir",
            str(cert_dir),
            "--json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stack.callback(stop_group, process, grace=10.0)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError("the simulators exited before becoming ready")
    return SimulatorProcess(process, json.loads(line))


def start_worker(
    stack: contextlib.ExitStack,
    index: int,
    concurrency: int,
    env: dict[str, str],
    logs: Path,
    celery_app: str = "config",
) -> Worker:
    name = f"bench{index}@%h"
    log_path = logs / f"worker-{index}.log"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        celery_app,
        "worker",
        "-l",
        "INFO",
        "--concurrency",
        str(concurrency),
        "-n",
        name,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(name=name, process=process, log_path=log_path)
    stack.callback(stop_group, process)
    if index == 0:
        log(f"  worker command: {' '.join(command[1:])}")
    return worker


def worker_errors(path: Path, limit: int = 40) -> list[str]:
    """The last error lines of a worker log, tracebacks included."""
    lines = path.read_text(errors="replace").splitlines()
    picked: list[str] = []
    in_traceback = False
    for line in lines:
        if " ERROR/" in line or " CRITICAL/" in line or line.startswith("Traceback"):
            in_traceback = True
        elif line.startswith("[") and " INFO/" in line:
            in_traceback = False
        if in_traceback:
            picked.append(line)
    return picked[-limit:]


def wait_ready(workers: Sequence[Worker], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        while b" ready." not in worker.log_path.read_bytes():
            if worker.process.poll() is not None or time.monotonic() > deadline:
                tail = worker.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker {worker.name} did not start:\n{tail}")
            time.sleep(0.2)


# --------------------------------------------------------------------------- sampling


@dataclass
class ProcessPeak:
    role: str
    rss_kb: int = 0  # highest sampled VmRSS
    hwm_kb: int = 0  # kernel's VmHWM, last read while the process lived

    @property
    def peak_mb(self) -> float:
        return max(self.rss_kb, self.hwm_kb) / 1024


@dataclass
class WorkerPeaks:
    main: ProcessPeak = field(default_factory=lambda: ProcessPeak("main"))
    children: dict[int, ProcessPeak] = field(default_factory=dict)
    children_sum_kb: int = 0  # highest sampled sum of the pool children's VmRSS
    total_kb: int = 0  # highest sampled main + children


class Sampler(threading.Thread):
    """Samples worker RSS and per-component CPU time every ``interval`` seconds."""

    def __init__(self, workers: Sequence[Worker], simulators_pid: int, db_name: str) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.workers = workers
        self.simulators_pid = simulators_pid
        self.db_name = db_name
        self.interval = 0.5
        self.peaks = {w.pid: WorkerPeaks() for w in workers}
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.cpu_start: dict[int, float] = {}
        self.cpu_last: dict[int, float] = {}
        self.roles: dict[int, str] = {}
        self.machine_start = (0.0, 0.0)
        self.machine_end = (0.0, 0.0)
        self.bench_start = 0.0
        self.bench_end = 0.0
        self.window_open = False

    def _bench_cpu(self) -> float:
        return _own_cpu_seconds()

    def _classify(self) -> dict[int, str]:
        roles: dict[int, str] = {self.simulators_pid: "simulators"}
        for worker in self.workers:
            roles[worker.pid] = "worker main"
            for child in worker.children():
                roles[child] = "worker pool children"
        for pid in all_pids():
            if pid in roles:
                continue
            comm = proc_comm(pid)
            if comm == "postgres":
                cmdline = proc_cmdline(pid)
                roles[pid] = (
                    "postgres (bench db backends)"
                    if f" {self.db_name} " in f" {cmdline} "
                    else "postgres (other)"
                )
            elif comm.startswith("redis-server"):
                roles[pid] = "redis"
        return roles

    def open_window(self) -> None:
        """Start CPU accounting (call right before the send)."""
        roles = self._classify()
        with self.lock:
            self.roles = roles
            for pid in roles:
                stat = proc_stat(pid)
                if stat is not None:
                    self.cpu_start[pid] = self.cpu_last[pid] = stat[1]
            self.machine_start = machine_busy_seconds()
            self.bench_start = self._bench_cpu()
            self.window_open = True

    def close_window(self) -> None:
        self._sample_cpu()
        with self.lock:
            self.machine_end = machine_busy_seconds()
            self.bench_end = self._bench_cpu()
            self.window_open = False

    def _sample_cpu(self) -> None:
        roles = self._classify()
        with self.lock:
            if not self.window_open:
                return
            for pid, role in roles.items():
                stat = proc_stat(pid)
                if stat is None:
                    continue
                self.roles.setdefault(pid, role)
                self.cpu_start.setdefault(pid, 0.0)  # born inside the window
                self.cpu_last[pid] = stat[1]

    def _sample_memory(self) -> None:
        for worker in self.workers:
            peaks = self.peaks[worker.pid]
            main_kb = proc_status_kb(worker.pid, "VmRSS")
            peaks.main.rss_kb = max(peaks.main.rss_kb, main_kb)
            peaks.main.hwm_kb = max(peaks.main.hwm_kb, proc_status_kb(worker.pid, "VmHWM"))
            children_kb = 0
            for child in worker.children():
                peak = peaks.children.setdefault(child, ProcessPeak(f"child {child}"))
                rss = proc_status_kb(child, "VmRSS")
                children_kb += rss
                peak.rss_kb = max(peak.rss_kb, rss)
                peak.hwm_kb = max(peak.hwm_kb, proc_status_kb(child, "VmHWM"))
            with self.lock:
                peaks.children_sum_kb = max(peaks.children_sum_kb, children_kb)
                peaks.total_kb = max(peaks.total_kb, main_kb + children_kb)

    def sample(self) -> None:
        self._sample_memory()
        self._sample_cpu()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        self._sample_memory()

    def current_rss_mb(self) -> float:
        total = 0
        for worker in self.workers:
            total += proc_status_kb(worker.pid, "VmRSS")
            total += sum(proc_status_kb(c, "VmRSS") for c in worker.children())
        return total / 1024

    def cpu_by_role(self) -> dict[str, float]:
        spent: defaultdict[str, float] = defaultdict(float)
        with self.lock:
            for pid, role in self.roles.items():
                if pid in self.cpu_last:
                    spent[role] += self.cpu_last[pid] - self.cpu_start.get(pid, 0.0)
            spent["bench process (polling)"] = self.bench_end - self.bench_start
        return dict(spent)

    def machine(self) -> tuple[float, float]:
        busy = self.machine_end[0] - self.machine_start[0]
        total = self.machine_end[1] - self.machine_start[1]
        return busy, total


# --------------------------------------------------------------------------- database


def ensure_database(database_url: str) -> str:
    """Create the bench database if it does not exist; return its name."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log(f"  created database {name}")
    return name


def migrate(env: dict[str, str]) -> None:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stdout}\n{result.stderr}")
    applied = result.stdout.count(" OK")
    log(f"  migrate: {applied} migrations applied ({time.perf_counter() - started:.1f} s)")


def empty_database() -> None:
    """Every project and everything hanging off it (tokens, users, campaigns, rows)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE projects RESTART IDENTITY CASCADE")


def flush_broker(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


def _fcm_token(i: int, rng: random.Random) -> str:
    """Shaped like a real FCM registration token: ~150 chars of base64url with a colon."""
    head = base64.urlsafe_b64encode(rng.randbytes(12)).decode()[:14]
    tail = base64.urlsafe_b64encode(rng.randbytes(96)).decode()[:121]
    return f"{i:08x}{head}:APA91b{tail}"


def provider_plan(tokens: int, apns_share: float, webpush_share: float) -> dict[str, int]:
    """How many of ``tokens`` each provider gets: the shares, FCM the rest."""
    apns = round(tokens * apns_share)
    webpush = min(round(tokens * webpush_share), tokens - apns)
    return {"apns": apns, "fcm": tokens - apns - webpush, "webpush": webpush}


def seed_tokens(
    project_id: uuid.UUID,
    plan: dict[str, int],
    layout: str,
    personalized: bool = False,
    subscriptions: Sequence[dict[str, Any]] = (),
) -> Counter[str]:
    """N users, one active token each, via COPY; providers interleaved or grouped.

    Loading 1M rows into indexed tables row by row is mostly index maintenance
    (~2 min on a busy 2-core machine), so, in one transaction, the tables'
    secondary indexes and unique constraints are dropped, the rows copied and the
    same definitions rebuilt (read back from the catalog, so they follow the
    migrations); an interrupted seed rolls all of it back. Values are random but
    start with the row number, so inserts into the primary keys append.
    ``personalized``: every user also has a first name of their own and one of 20
    cities, so each gets a distinct text (the worst case for payload sharing).
    ``subscriptions`` (``plan["webpush"]`` of them) are the web push rows' endpoints
    and keys.
    """
    import psycopg
    from django.db import DatabaseError, connection, transaction

    rng = random.Random(project_id.int)  # bench data, not secrets; unique per project
    providers = [name for name, count in plan.items() for _ in range(count)]
    tokens = len(providers)
    if len(subscriptions) != plan.get("webpush", 0):
        raise ValueError("one minted subscription per web push token")
    browsers = iter(subscriptions)
    if layout == "interleaved":
        rng.shuffle(providers)
    now = datetime.now(UTC).isoformat()
    languages = ("en", "fr", "de", "es", "pt", "ja")
    user_base = rng.getrandbits(24) << 104
    chunk = 50_000
    connection.ensure_connection()
    pg = connection.connection
    users_sql = "COPY app_users (id, project_id, external_id, attributes, created_at) FROM STDIN"
    tokens_sql = (
        "COPY push_tokens (project_id, app_user_id, token, provider, platform, active, "
        "locale, timezone, app_version, created_at, last_registered_at, invalid_reason, keys) "
        "FROM STDIN"
    )
    project = str(project_id)
    with transaction.atomic(), pg.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        # Deferred foreign-key checks left pending would forbid the ALTER TABLEs.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with contextlib.suppress(DatabaseError, psycopg.Error), transaction.atomic():
            # Superusers may skip the per-row foreign-key triggers: every user row
            # is written just before its token, in this same transaction.
            cursor.execute("SET LOCAL session_replication_role = replica")
        indexes = _drop_secondary_indexes(cursor, ("app_users", "push_tokens"))
        for start in range(0, tokens, chunk):
            users: list[str] = []
            rows: list[str] = []
            for i in range(start, min(start + chunk, tokens)):
                user_id = f"{user_base | (i << 64) | rng.getrandbits(64):032x}"
                language = languages[i % len(languages)]
                attributes = f'{{"language": "{language}", "country": "FR"'
                if personalized:
                    attributes += f', "first_name": "user{i}", "city": "city{i % 20}"'
                attributes += "}"
                users.append(f"{user_id}\t{project}\tbench-{i:09d}\t{attributes}\t{now}\n")
                keys = "\\N"
                if providers[i] == "apns":
                    token, platform = f"{i:012x}{rng.getrandbits(208):052x}", "ios"
                elif providers[i] == "webpush":
                    browser = next(browsers)
                    token, platform = browser["endpoint"], "web"
                    keys = json.dumps(browser["keys"])
                else:
                    token, platform = _fcm_token(i, rng), "android"
                rows.append(
                    f"{project}\t{user_id}\t{token}\t{providers[i]}\t{platform}\tt\t"
                    f"{language}\t\t\t{now}\t{now}\t\t{keys}\n"
                )
            with cursor.copy(users_sql) as copy:
                copy.write("".join(users))
            with cursor.copy(tokens_sql) as copy:
                copy.write("".join(rows))
        for statement in indexes:
            cursor.execute(statement)
    with pg.cursor() as cursor:
        cursor.execute("ANALYZE app_users")
        cursor.execute("ANALYZE push_tokens")
    return Counter(providers)


def _drop_secondary_indexes(cursor: Any, tables: Sequence[str]) -> list[str]:
    """Drop every non-primary index / unique constraint of ``tables``; return the
    statements that recreate them exactly (primary keys stay: foreign keys use them)."""
    cursor.execute(
        """
        SELECT i.indrelid::regclass::text, c.relname, pg_get_indexdef(i.indexrelid),
               con.conname, pg_get_constraintdef(con.oid)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
        WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary
        """,
        [list(tables)],
    )
    recreate = []
    for table, index, index_def, constraint, constraint_def in cursor.fetchall():
        if constraint:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
            recreate.append(f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" {constraint_def}')
        else:
            cursor.execute(f'DROP INDEX "{index}"')
            recreate.append(index_def)
    return recreate


def create_project(info: dict[str, Any]) -> Any:
    from core.models import Project
    from core.services import project_generate_vapid
    from delivery.simulators.credentials import ensure_demo_credentials

    creds = ensure_demo_credentials(Path(info["cert_dir"]), fcm_base_url=info["fcm_endpoint"])
    project = Project.objects.create(
        name=PROJECT_NAME,
        apns_team_id=creds.team_id,
        apns_key_id=creds.key_id,
        apns_auth_key=creds.auth_key_pem,
        apns_topic=creds.topic,
        apns_endpoint=info["apns_endpoint"],
        apns_ca_file=str(creds.ca_file),
        fcm_service_account=creds.service_account_info,
        fcm_endpoint=info["fcm_endpoint"],
        fcm_ca_file=str(creds.ca_file),
        webpush_ca_file=str(creds.ca_file),
    )
    project, _ = project_generate_vapid(project=project, subject="mailto:bench@example.com")
    return project


# --------------------------------------------------------------------------- ceiling


@dataclass
class Ceiling:
    rate: float
    seconds: float
    messages: int
    per_provider: dict[str, float]
    cpu_seconds: float  # this process, warm-ups included

    @property
    def cpu_ms_per_message(self) -> float:
        return 1000 * self.cpu_seconds / self.messages


def measure_ceiling(simulators: Any, plan: dict[str, int], batch_size: int) -> Ceiling:
    """The real senders alone, this process, same mix: total messages / total time.

    Each provider is measured with bench/sender.py's ``measure_sender_ceiling`` (warm
    connections, steady state) and the mix is sent one provider after the other, as
    ``deliveries_send`` does within a batch.
    """
    from django.conf import settings

    from bench.sender import measure_sender_ceiling
    from delivery.providers import runtime

    messages = sum(plan.values())
    concurrency = {
        "apns": settings.HERALD_APNS_CONCURRENCY,
        "fcm": settings.HERALD_FCM_CONCURRENCY,
        "webpush": None,  # WebPushConfig's defaults, as delivery.credentials builds it
    }
    seconds = 0.0
    rates: dict[str, float] = {}
    cpu_before = _own_cpu_seconds()
    for provider, count in plan.items():
        if not count:
            continue
        result = measure_sender_ceiling(
            simulators,
            provider,
            messages=count,
            concurrency=concurrency[provider],
            batch_size=batch_size,
        )
        log(f"  {result.line()}")
        if result.outcomes.get("sent", 0) != count:
            raise RuntimeError(f"ceiling run for {provider} did not send everything")
        seconds += result.seconds
        rates[provider] = result.rate
    cpu = _own_cpu_seconds() - cpu_before
    runtime.shutdown()
    return Ceiling(messages / seconds, seconds, messages, rates, cpu)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- profiling

HERALD_PACKAGES = tuple(
    f"({p.parent.name}/" for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests"
)


def _is_herald_frame(frame: str) -> bool:
    """py-spy names frames ``func (path:line)``, paths relative to sys.path entries."""
    return any(package in frame for package in HERALD_PACKAGES) or f"({ROOT}/" in frame


@dataclass
class Profiler:
    directory: Path
    rate: int = 50  # samples/s per process; py-spy itself costs CPU on a small machine
    processes: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, pids: dict[int, str]) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.directory.mkdir(parents=True, exist_ok=True)
        for pid, label in pids.items():
            out = self.directory / f"{label}-{pid}.txt"
            process = subprocess.Popen(
                [
                    *(py_spy, "record", "--pid", str(pid), "--rate", str(self.rate)),
                    *("--format", "raw", "--nonblocking", "--output", str(out)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.processes.append((label, process, out))

    def stop(self) -> None:
        for _, process, _ in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)
        for _, process, _ in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stop_group(process, grace=1)

    def report(self, top: int = 20) -> None:
        """Where the pool children spent their samples (busy samples only).

        * self: the innermost frame (library code included);
        * by Herald function: inclusive, line numbers folded;
        * by Herald line: each sample charged to the innermost Herald frame, i.e. the
          line of our code that caused the work below it (the one to change).
        """
        own: Counter[str] = Counter()
        functions: Counter[str] = Counter()
        lines: Counter[str] = Counter()
        samples = 0
        for label, _, out in self.processes:
            if label != "child" or not out.exists():
                continue
            for line in out.read_text(errors="replace").splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
                if not frames:
                    continue
                samples += count
                own[frames[-1]] += count
                ours = [f for f in frames if _is_herald_frame(f)]
                for name in {f.rsplit(":", 1)[0] + ")" for f in ours}:
                    functions[name] += count
                if ours:
                    lines[ours[-1]] += count
        if not samples:
            log("  (no py-spy samples)")
            return
        log(f"  py-spy: {samples} busy samples over the pool children ({self.directory})")
        for title, counter in (
            ("self time (innermost frame)", own),
            ("inclusive, by Herald function", functions),
            ("charged to the innermost Herald line", lines),
        ):
            log(f"  {title}:")
            for frame, count in counter.most_common(top):
                log(f"    {100 * count / samples:5.1f}%  {frame}")


# --------------------------------------------------------------------------- the run


def simulator_stats(simulators: Any) -> dict[str, Any]:
    with urllib.request.urlopen(simulators.info["control_url"] + "/stats", timeout=30) as resp:  # noqa: S310
        return dict(json.load(resp))


PROVIDERS = ("apns", "fcm", "webpush")


def accepted(stats: dict[str, Any]) -> int:
    return sum(int(stats[provider]["accepted"]) for provider in PROVIDERS)


@dataclass
class RunResult:
    status: str
    send_call_seconds: float = 0.0
    first_delivery_seconds: float | None = None
    fanout_done_seconds: float | None = None
    sent_seconds: float | None = None
    observed_sent_seconds: float | None = None


def run_campaign(
    project: Any,
    simulators: Any,
    sampler: Sampler,
    *,
    timeout: float,
    every: float,
    stall: float,
    personalized: bool = False,
) -> tuple[Any, RunResult]:
    from campaigns import services
    from campaigns.models import CampaignRun, CampaignStatus, PushCampaign

    text = (
        {
            "title": 'Spring sale, {{ first_name | capitalize | default: "friend" }}',
            "body": '{{ city | default: "Everywhere" }}: 20% off everything today',
        }
        if personalized
        else {"title": "Spring sale", "body": "20% off everything today"}
    )
    campaign = services.campaign_create(
        project=project,
        fields={"name": "bench broadcast", **text, "data": {"campaign": "bench"}},  # type: ignore[typeddict-item]
    )
    sampler.open_window()
    t0 = time.time()
    services.campaign_send(project=project, campaign_id=campaign.id)
    result = RunResult(status=CampaignStatus.SENDING, send_call_seconds=time.time() - t0)
    log(f"  campaign_send returned in {result.send_call_seconds:.3f} s; campaign {campaign.id}")
    last_print, last_sent, last_t = t0, 0, t0
    progress_mark, progress_at = -1, t0
    final = (CampaignStatus.SENT, CampaignStatus.FAILED, CampaignStatus.CANCELLED)
    while True:
        now = time.time()
        elapsed = now - t0
        if result.first_delivery_seconds is None and accepted(simulator_stats(simulators)):
            result.first_delivery_seconds = elapsed
            log(f"  first delivery accepted by a simulator after {elapsed:.2f} s")
        status = PushCampaign.objects.values_list("status", flat=True).get(pk=campaign.pk)
        run = CampaignRun.objects.filter(campaign_id=campaign.pk).order_by("-number").first()
        if run is not None and run.fanout_done and result.fanout_done_seconds is None:
            result.fanout_done_seconds = elapsed
            log(f"  fan-out done (all rows created, batches enqueued) after {elapsed:.2f} s")
        if status in final:
            result.status = status
            result.observed_sent_seconds = elapsed
            break
        done = 0 if run is None else run.sent + run.failed + run.invalid_tokens + run.skipped
        if done != progress_mark:
            progress_mark, progress_at = done, now
        elif now - progress_at > stall:
            result.status = f"stalled ({status}: no progress for {stall:.0f} s)"
            break
        if now - last_print >= every and run is not None:
            interval_rate = (done - last_sent) / (now - last_t) if now > last_t else 0.0
            log(
                f"  [{elapsed:7.1f} s] {status}: {done:,}/{run.targeted:,} done "
                f"(sent {run.sent:,}, failed {run.failed:,}, invalid {run.invalid_tokens:,}) "
                f"rate now {interval_rate:,.0f}/s, avg {done / elapsed:,.0f}/s, "
                f"workers rss {sampler.current_rss_mb():,.0f} MB"
            )
            last_print, last_sent, last_t = now, done, now
        if elapsed > timeout:
            result.status = f"timeout ({status})"
            break
        time.sleep(0.1 if result.first_delivery_seconds is None else 0.5)
    sampler.close_window()
    campaign.refresh_from_db()
    if campaign.completed_at is not None and campaign.status == CampaignStatus.SENT:
        result.sent_seconds = campaign.completed_at.timestamp() - t0
    return campaign, result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--apns-share", type=float, default=0.5, help="0..1")
    parser.add_argument(
        "--webpush-share", type=float, default=0.0, help="0..1; the rest after both is FCM"
    )
    parser.add_argument(
        "--layout",
        choices=("interleaved", "grouped"),
        default="interleaved",
        help="providers mixed in token-id order (realistic) or APNs block then FCM block",
    )
    parser.add_argument(
        "--personalized",
        action="store_true",
        help="title and body with placeholders; users with a distinct first name each",
    )
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size per worker")
    parser.add_argument("--keep", action="store_true", help="keep earlier data and queue")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"))
    parser.add_argument("--fanout-chunk", type=int, help="HERALD_FANOUT_CHUNK_SIZE")
    parser.add_argument("--send-chunk", type=int, help="HERALD_SEND_CHUNK_SIZE")
    parser.add_argument("--apns-concurrency", type=int, help="HERALD_APNS_CONCURRENCY")
    parser.add_argument("--fcm-concurrency", type=int, help="HERALD_FCM_CONCURRENCY")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra worker env"
    )
    parser.add_argument(
        "--celery-app",
        default="config",
        help="worker -A (what-if runs: a module importing config.celery that patches code)",
    )
    parser.add_argument("--ceiling-messages", type=int, default=20_000)
    parser.add_argument("--ceiling-batch", type=int, default=1000)
    parser.add_argument("--progress-every", type=float, default=3.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for the send")
    parser.add_argument(
        "--stall", type=float, default=180.0, help="give up after this long without progress"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, metavar="DIR", help="py-spy the pool children"
    )
    parser.add_argument("--profile-rate", type=int, default=50, help="py-spy samples/s")
    args = parser.parse_args(argv)
    if not 0.0 <= args.apns_share <= 1.0 or not 0.0 <= args.webpush_share <= 1.0:
        parser.error("--apns-share and --webpush-share must be within 0..1")
    if args.apns_share + args.webpush_share > 1.0:
        parser.error("--apns-share + --webpush-share must be at most 1")
    if args.tokens < 1 or args.workers < 1 or args.concurrency < 1:
        parser.error("--tokens, --workers and --concurrency must be positive")
    return args


def configure_environment(args: argparse.Namespace) -> dict[str, str]:
    """Set this process's environment (read by settings) and return the workers'."""
    database_url = args.database_url or DEFAULT_DATABASE_URL
    redis_url = args.redis_url or DEFAULT_REDIS_URL
    overrides = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
    }
    for flag, name in (
        ("fanout_chunk", "HERALD_FANOUT_CHUNK_SIZE"),
        ("send_chunk", "HERALD_SEND_CHUNK_SIZE"),
        ("apns_concurrency", "HERALD_APNS_CONCURRENCY"),
        ("fcm_concurrency", "HERALD_FCM_CONCURRENCY"),
    ):
        if getattr(args, flag) is not None:
            overrides[name] = str(getattr(args, flag))
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env wants KEY=VALUE, got {item!r}")
        overrides[key] = value
    os.environ.update(overrides)
    return dict(os.environ)


def code_version() -> str:
    """HEAD and any uncommitted changes to the code the workers run."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.rstrip()

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--", "campaigns", "delivery", "segments", "core")
    changed = [line[3:] for line in dirty.splitlines() if line[3:].endswith(".py")]
    return head + (f" + uncommitted: {' '.join(changed)}" if changed else "")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    env = configure_environment(args)
    log(
        f"== Herald fan-out bench: {args.tokens:,} tokens, apns share {args.apns_share}, "
        f"web push share {args.webpush_share}"
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    log(f"  cpus={os.cpu_count()} python={sys.version.split()[0]} loadavg={load}")
    log(f"  code: {code_version()}")
    db_name = ensure_database(env["DATABASE_URL"])
    migrate(env)

    import django

    django.setup()
    from django.conf import settings
    from django.db.models import Count

    from campaigns.runs import run_stats
    from delivery.models import PushDelivery

    if args.keep:
        log("  --keep: earlier data and queued tasks left in place")
    else:
        empty_database()
        flush_broker(env["REDIS_URL"])
        log("  emptied the bench database (projects cascade) and flushed the bench broker db")

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="herald-fanout-")))
        simulators = start_simulators(stack, tmp / "simulators")
        log(f"  simulators pid {simulators.process.pid}: {simulators.info['apns_endpoint']}")
        project = create_project(simulators.info)

        plan = provider_plan(args.tokens, args.apns_share, args.webpush_share)
        started = time.perf_counter()
        subscriptions = simulators.mint_webpush(plan["webpush"]) if plan["webpush"] else []
        if subscriptions:
            log(
                f"  minted {len(subscriptions):,} web push subscriptions at the simulator in "
                f"{time.perf_counter() - started:.1f} s"
            )
        mix = seed_tokens(project.id, plan, args.layout, args.personalized, subscriptions)
        seed_seconds = time.perf_counter() - started
        log(
            f"== seeded {args.tokens:,} users + tokens ({dict(mix)}, {args.layout}) "
            f"in {seed_seconds:.1f} s ({args.tokens / seed_seconds:,.0f} rows/s per table)"
        )

        log(f"== sender-alone ceiling ({args.ceiling_messages:,} messages, same mix)")
        ceiling = measure_ceiling(
            simulators,
            provider_plan(args.ceiling_messages, args.apns_share, args.webpush_share),
            args.ceiling_batch,
        )
        log(
            f"  ceiling: {ceiling.rate:,.0f} msg/s ({ceiling.messages:,} in "
            f"{ceiling.seconds:.2f} s, batch {args.ceiling_batch}); "
            f"{ceiling.cpu_ms_per_message:.2f} ms CPU per message"
        )

        log(f"== starting {args.workers} worker(s) x --concurrency {args.concurrency}")
        worker_env = {**env, "HERALD_VAR_DIR": str(settings.VAR_DIR)}
        logs = tmp / "logs"
        logs.mkdir()
        workers = [
            start_worker(stack, i, args.concurrency, worker_env, logs, args.celery_app)
            for i in range(args.workers)
        ]
        wait_ready(workers)
        db = settings.DATABASES["default"]
        log(
            f"  pool=prefork concurrency={args.concurrency} "
            f"prefetch_multiplier={settings.CELERY_WORKER_PREFETCH_MULTIPLIER} "
            f"acks_late={settings.CELERY_TASK_ACKS_LATE} broker={settings.CELERY_BROKER_URL} "
            f"db={db['NAME']}@{db.get('HOST')} conn_max_age={db.get('CONN_MAX_AGE')}"
        )
        log("  " + " ".join(f"{knob}={getattr(settings, knob)}" for knob in KNOBS))
        for worker in workers:
            log(f"  {worker.name}: main pid {worker.pid}, pool children {worker.children()}")

        simulators.reset()
        sampler = Sampler(workers, simulators.process.pid, db_name)
        sampler.start()
        stack.callback(sampler.stopped.set)
        profiler: Profiler | None = None
        if args.profile is not None:
            profiler = Profiler(args.profile, args.profile_rate)
            targets = {c: "child" for w in workers for c in w.children()}
            targets.update({w.pid: "main" for w in workers})
            profiler.start(targets)
            stack.callback(profiler.stop)

        log("== send")
        campaign, result = run_campaign(
            project,
            simulators,
            sampler,
            timeout=args.timeout,
            every=args.progress_every,
            stall=args.stall,
            personalized=args.personalized,
        )
        if profiler is not None:
            profiler.stop()
        sampler.stop()
        sim = simulator_stats(simulators)

        stats = run_stats(campaign.id, campaign.current_run)
        rows = PushDelivery.objects.filter(campaign=campaign)
        per_provider = dict(
            rows.order_by()
            .values_list("provider")
            .annotate(n=Count("id"))
            .values_list("provider", "n")
        )

        verdict = report(
            args=args,
            mix=mix,
            ceiling=ceiling,
            workers=workers,
            sampler=sampler,
            campaign=campaign,
            result=result,
            sim=sim,
            stats=stats,
            per_provider=per_provider,
        )
        if profiler is not None:
            profiler.report()
        log(verdict.summary)
        return 0 if verdict.passed else 1


@dataclass
class Verdict:
    passed: bool
    summary: str


def report(
    *,
    args: argparse.Namespace,
    mix: Counter[str],
    ceiling: Ceiling,
    workers: Sequence[Worker],
    sampler: Sampler,
    campaign: Any,
    result: RunResult,
    sim: dict[str, Any],
    stats: dict[str, int],
    per_provider: dict[str, int],
) -> Verdict:
    """Print the figures of a finished (or abandoned) send; return the SUMMARY."""
    from django.conf import settings

    from campaigns.runs import campaign_stats

    seconds = result.sent_seconds or result.observed_sent_seconds or 0.0
    e2e_rate = stats["sent"] / seconds if seconds else 0.0
    ratio = e2e_rate / ceiling.rate if ceiling.rate else 0.0
    sim_accepted = accepted(sim)
    duplicates = sum(int(sim[provider]["duplicates"]) for provider in PROVIDERS)

    log("== results")
    log(f"  status: {result.status}")
    log(f"  tokens: {args.tokens:,} ({dict(mix)}); delivery rows: {per_provider}")
    observed = result.observed_sent_seconds or 0.0
    log(f"  time to sent: {seconds:.2f} s (seen by polling after {observed:.2f} s)")
    if result.first_delivery_seconds is not None:
        log(f"  time to first delivery: {result.first_delivery_seconds:.2f} s")
    if result.fanout_done_seconds is not None:
        log(f"  fan-out finished after: {result.fanout_done_seconds:.2f} s")
    log(f"  end-to-end rate: {e2e_rate:,.0f} deliveries/s")
    log(f"  sender-alone ceiling: {ceiling.rate:,.0f} msg/s -> ratio {ratio:.2f}")

    peak_process_mb = 0.0
    for worker in workers:
        peaks = sampler.peaks[worker.pid]
        children = peaks.children.values()
        peak_process_mb = max([peak_process_mb, peaks.main.peak_mb, *(c.peak_mb for c in children)])
        child_text = ", ".join(f"{c.role} {c.peak_mb:.0f} MB" for c in children)
        log(
            f"  {worker.name} peak RSS: main {peaks.main.peak_mb:.0f} MB; {child_text}; "
            f"children together {peaks.children_sum_kb / 1024:.0f} MB; "
            f"main+children {peaks.total_kb / 1024:.0f} MB"
        )

    busy, total = sampler.machine()
    cores = os.cpu_count() or 1
    log(
        f"  CPU seconds during the send ({total / cores:.1f} s wall x {cores} cores, "
        f"machine busy {busy:.1f} s = {100 * busy / total if total else 0:.0f}%):"
    )
    accounted = 0.0
    cpu = sampler.cpu_by_role()
    for role, spent in sorted(cpu.items(), key=lambda kv: -kv[1]):
        accounted += spent
        log(f"    {role:32s} {spent:8.1f} s")
    log(f"    {'everything else on the machine':32s} {busy - accounted:8.1f} s")
    others = 100 * (busy - accounted) / total if total else 0.0
    delivered = max(stats["sent"], 1)
    worker_ms = 1000 * (cpu.get("worker pool children", 0.0) + cpu.get("worker main", 0.0))
    worker_ms /= delivered
    db_ms = 1000 * cpu.get("postgres (bench db backends)", 0.0) / delivered
    sim_ms = 1000 * cpu.get("simulators", 0.0) / delivered
    log(
        f"  CPU per delivery: workers {worker_ms:.2f} ms, postgres {db_ms:.2f} ms, "
        f"simulators {sim_ms:.2f} ms; the sender alone needs "
        f"{ceiling.cpu_ms_per_message:.2f} ms/message (CPU ratio "
        f"{ceiling.cpu_ms_per_message / worker_ms if worker_ms else 0:.2f})"
    )

    for provider in PROVIDERS:
        p = sim[provider]
        if not p["requests_total"]:
            continue
        log(
            f"  simulator {provider}: accepted {p['accepted']:,} duplicates {p['duplicates']} "
            f"requests {p['requests_total']:,} by_status {p['by_status']} "
            f"connections {p['connections']} auth_tokens {p['auth_tokens']}"
        )
    log(f"  campaign stats: {campaign_stats(campaign)}")
    log(f"  exact stats from rows: {stats}")
    if result.status != "sent":
        for worker in workers:
            log(f"  {worker.name} errors (log {worker.log_path}):")
            for line in worker_errors(worker.log_path):
                log(f"    {line}")

    passed = (
        result.status == "sent"
        and sim_accepted == args.tokens
        and duplicates == 0
        and stats["sent"] == args.tokens
    )
    summary = (
        f"SUMMARY tokens={args.tokens} personalized={args.personalized} "
        f"apns_share={args.apns_share} webpush_share={args.webpush_share} "
        f"workers={args.workers} "
        f"concurrency={args.concurrency} fanout_chunk={settings.HERALD_FANOUT_CHUNK_SIZE} "
        f"send_chunk={settings.HERALD_SEND_CHUNK_SIZE} e2e_rate={e2e_rate:.0f}/s "
        f"ceiling={ceiling.rate:.0f}/s ratio={ratio:.2f} time_to_sent={seconds:.1f}s "
        f"first_delivery={result.first_delivery_seconds or 0:.2f}s "
        f"peak_worker_rss_mb={peak_process_mb:.0f} worker_cpu_ms={worker_ms:.2f} "
        f"others_cpu={others:.0f}% accepted={sim_accepted} duplicates={duplicates} "
        f"status={result.status} ok={str(passed).lower()}"
    )
    return Verdict(passed, summary)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'Ctrl-C'}); worker and simulator processes stopped")
        sys.exit(130)
