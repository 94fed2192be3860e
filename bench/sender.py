"""Sender-alone throughput: how fast one process pushes through the real senders.

    python bench/sender.py [--messages 20000] [--provider apns|fcm|webpush|both|all]
                           [--concurrency N]

The simulators run in a *separate* process (``python -m delivery.simulators``) so
they do not share this process's GIL; no database, no Celery. Messages go through
``delivery.providers.runtime.send_batch`` in batches, exactly as a Celery task
sends them, so the figure is the ceiling the fan-out can reach per worker process.
Other benches import :func:`measure_sender_ceiling` / :func:`simulators_process`.

Web push: the subscriptions are minted by the simulator (one per message, so the
simulator's duplicate count means something), the VAPID key is generated here, and
the time spent encrypting (RFC 8291, per message) is reported apart from the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from delivery.providers import runtime  # noqa: E402
from delivery.providers.base import (  # noqa: E402
    ApnsConfig,
    FcmConfig,
    OutgoingPush,
    WebPushConfig,
)
from delivery.providers.webpush import WebPushSender, b64url_encode, webpush_headers  # noqa: E402

APNS_PAYLOAD: dict[str, Any] = {
    "aps": {
        "alert": {"title": "Spring sale", "body": "20% off everything today"},
        "sound": "default",
    },
    "campaign": "bench",
}
APNS_HEADERS = {"apns-push-type": "alert", "apns-priority": "10"}
FCM_PAYLOAD: dict[str, Any] = {
    "notification": {"title": "Spring sale", "body": "20% off everything today"},
    "data": {"campaign": "bench"},
    "android": {"priority": "high", "ttl": "3600s"},
}
WEBPUSH_PAYLOAD: dict[str, Any] = {
    "title": "Spring sale",
    "body": "20% off everything today",
    "url": "https://example.com/sale",
    "data": {"campaign": "bench"},
}
WEBPUSH_HEADERS = webpush_headers(ttl_seconds=3600, priority="high")


@dataclass
class SimulatorProcess:
    """A running ``python -m delivery.simulators`` and what it printed when ready."""

    process: subprocess.Popen[str]
    info: dict[str, Any]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.info["control_url"] + "/stats", timeout=10) as resp:  # noqa: S310
            return dict(json.load(resp))

    def reset(self) -> None:
        request = urllib.request.Request(self.info["control_url"] + "/reset", data=b"{}")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def apns_config(self, concurrency: int | None = None) -> ApnsConfig:
        info = self.info
        config = ApnsConfig(
            topic=info["apns_topic"],
            team_id=info["apns_team_id"],
            key_id=info["apns_key_id"],
            auth_key_pem=Path(info["apns_key_file"]).read_text(),
            endpoint=info["apns_endpoint"],
            ca_file=info["ca_file"],
        )
        return replace(config, concurrency=concurrency) if concurrency else config

    def fcm_config(self, concurrency: int | None = None) -> FcmConfig:
        info = self.info
        config = FcmConfig(
            service_account_info=json.loads(Path(info["fcm_service_account_file"]).read_text()),
            endpoint=info["fcm_endpoint"],
            ca_file=info["ca_file"],
        )
        return replace(config, concurrency=concurrency) if concurrency else config

    def webpush_config(self, concurrency: int | None = None) -> WebPushConfig:
        key = ec.generate_private_key(ec.SECP256R1())
        config = WebPushConfig(
            vapid_private_key=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            vapid_public_key=b64url_encode(
                key.public_key().public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                )
            ),
            subject="mailto:bench@example.com",
            ca_file=self.info["ca_file"],
        )
        return replace(config, concurrency=concurrency) if concurrency else config

    def mint_webpush(self, count: int) -> list[dict[str, Any]]:
        """``count`` subscriptions from the simulator (in calls of at most 50,000)."""
        minted: list[dict[str, Any]] = []
        while len(minted) < count:
            body = json.dumps({"count": min(50_000, count - len(minted))}).encode()
            request = urllib.request.Request(  # noqa: S310
                self.info["control_url"] + "/webpush/subscriptions", data=body
            )
            with urllib.request.urlopen(request, timeout=120) as resp:  # noqa: S310
                minted.extend(json.load(resp)["subscriptions"])
        return minted


@contextlib.contextmanager
def simulators_process(cert_dir: Path | None = None) -> Iterator[SimulatorProcess]:
    """Start the simulators in their own process on free ports; stop them after."""
    with contextlib.ExitStack() as stack:
        if cert_dir is None:
            cert_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="herald-sim-")))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "delivery.simulators",
                "--apns-port=0",
                "--fcm-port=0",
                "--webpush-port=0",
                "--control-port=0",
                f"--cert-dir={cert_dir}",
                "--json",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("simulators exited before becoming ready")
            yield SimulatorProcess(process, json.loads(line))
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process (Linux /proc), 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class BenchResult:
    """Wall-clock rate, plus CPU per message on each side: on a shared or busy
    machine the CPU figures still say what one free core would do."""

    provider: str
    messages: int
    seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    simulator: dict[str, Any] = field(default_factory=dict)
    sender_cpu_seconds: float = 0.0
    simulator_cpu_seconds: float = 0.0
    encrypt_seconds: float | None = None  # web push only

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def sender_cpu_ceiling(self) -> float:
        """Messages per second one fully available core would send."""
        return self.messages / self.sender_cpu_seconds if self.sender_cpu_seconds else 0.0

    @property
    def simulator_cpu_ceiling(self) -> float:
        cpu = self.simulator_cpu_seconds
        return self.messages / cpu if cpu else 0.0

    def line(self) -> str:
        sim = self.simulator
        per_message = 1e6 / self.messages
        return (
            f"{self.provider}: {self.messages} messages in {self.seconds:.2f} s = "
            f"{self.rate:,.0f} msg/s  outcomes={dict(self.outcomes)}\n"
            f"  sender CPU {self.sender_cpu_seconds * per_message:.0f} us/msg "
            f"(one core: {self.sender_cpu_ceiling:,.0f} msg/s); simulator CPU "
            f"{self.simulator_cpu_seconds * per_message:.0f} us/msg "
            f"(one core: {self.simulator_cpu_ceiling:,.0f} msg/s)\n"
            f"  simulator accepted={sim.get('accepted')} duplicates={sim.get('duplicates')} "
            f"connections={sim.get('connections')} auth_tokens={sim.get('auth_tokens')}"
            + (
                f"\n  encryption (RFC 8291) {self.encrypt_seconds * per_message:.0f} us/msg of "
                "the sender CPU above"
                if self.encrypt_seconds is not None
                else ""
            )
        )


def _pushes(
    provider: str, start: int, count: int, subscriptions: list[dict[str, Any]] | None = None
) -> list[OutgoingPush]:
    if provider == "webpush":
        assert subscriptions is not None
        return [
            OutgoingPush(
                str(i),
                subscriptions[i % len(subscriptions)]["endpoint"],
                WEBPUSH_PAYLOAD,
                WEBPUSH_HEADERS,
                keys=subscriptions[i % len(subscriptions)]["keys"],
            )
            for i in range(start, start + count)
        ]
    if provider == "apns":
        return [
            OutgoingPush(str(i), f"{i:064x}", APNS_PAYLOAD, APNS_HEADERS)
            for i in range(start, start + count)
        ]
    return [
        OutgoingPush(str(i), f"bench-fcm-token-{i:024d}", FCM_PAYLOAD)
        for i in range(start, start + count)
    ]


def measure_sender_ceiling(
    simulators: SimulatorProcess,
    provider: str,
    *,
    messages: int = 20_000,
    concurrency: int | None = None,
    batch_size: int = 1000,
) -> BenchResult:
    """Send ``messages`` distinct pushes through the real sender; time them.

    A warm-up batch first opens the connections and fetches the JWT/OAuth token,
    so the figure is steady-state throughput, which is what long-lived workers see.
    """
    config: ApnsConfig | FcmConfig | WebPushConfig
    subscriptions = None
    if provider == "apns":
        config = simulators.apns_config(concurrency)
    elif provider == "fcm":
        config = simulators.fcm_config(concurrency)
    else:
        config = simulators.webpush_config(concurrency)
        # One subscription per message (and the warm-up batch), minted before timing.
        subscriptions = simulators.mint_webpush(messages + batch_size)
    warmup_start = messages if subscriptions is not None else 10_000_000
    warmup = _pushes(provider, warmup_start, batch_size, subscriptions)
    runtime.send_batch(config, warmup)
    sender = runtime.get_sender(config)
    encrypt_before = sender.encrypt_seconds if isinstance(sender, WebPushSender) else 0.0
    simulators.reset()
    outcomes: Counter[str] = Counter()
    simulator_pid = simulators.process.pid
    simulator_cpu = process_cpu_seconds(simulator_pid)
    sender_cpu = time.process_time()  # this process, the runtime's loop thread included
    started = time.perf_counter()
    for start in range(0, messages, batch_size):
        batch = _pushes(provider, start, min(batch_size, messages - start), subscriptions)
        for result in runtime.send_batch(config, batch):
            outcomes[str(result.outcome)] += 1
    elapsed = time.perf_counter() - started
    return BenchResult(
        provider,
        messages,
        elapsed,
        outcomes,
        simulators.stats()[provider],
        sender_cpu_seconds=time.process_time() - sender_cpu,
        simulator_cpu_seconds=process_cpu_seconds(simulator_pid) - simulator_cpu,
        encrypt_seconds=(
            sender.encrypt_seconds - encrypt_before if isinstance(sender, WebPushSender) else None
        ),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument(
        "--provider",
        choices=("apns", "fcm", "webpush", "both", "all"),
        default="both",
        help="both = apns + fcm; all = apns + fcm + webpush",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="default: the config's")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args(argv)
    providers = {"both": ("apns", "fcm"), "all": ("apns", "fcm", "webpush")}.get(
        args.provider, (args.provider,)
    )
    results = []
    with simulators_process() as simulators:
        for provider in providers:
            result = measure_sender_ceiling(
                simulators,
                provider,
                messages=args.messages,
                concurrency=args.concurrency,
                batch_size=args.batch_size,
            )
            results.append(result)
            print(result.line(), flush=True)
    runtime.shutdown()
    summary = "  ".join(
        f"{r.provider}={r.rate:,.0f} msg/s (one free core: {r.sender_cpu_ceiling:,.0f})"
        for r in results
    )
    print(
        f"SUMMARY sender-alone: {summary}  "
        f"[messages={args.messages}, concurrency={args.concurrency or 'default'}, "
        f"batch={args.batch_size}, cpus={os.cpu_count()}, load={os.getloadavg()[0]:.1f}]"
    )


if __name__ == "__main__":
    main()
