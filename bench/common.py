"""Shared benchmark plumbing: the stack, sandboxes, worker processes, workloads and results.

Each benchmark runs the worker as a real `python -m processor worker` process confined to a
sandbox (its own topic prefix, Redis key prefix, app id and data folder), exactly like the
integration tests, and writes its results as JSON under `bench/results/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from redis.asyncio import Redis

from schemas.base import campaign_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
CACHE = BENCH / ".cache"
GIT = shutil.which("git") or "git"
STACK_VARS = ("SENDGUARD_KAFKA_BOOTSTRAP_SERVERS", "SENDGUARD_REDIS_URL")


def stack_env() -> dict[str, str]:
    """Bootstrap servers and Redis URL of the local stack (`scripts/stack.sh up` if unset)."""
    if all(os.environ.get(name) for name in STACK_VARS):
        return {name: os.environ[name] for name in STACK_VARS}
    env_file = REPO / ".stack" / "env"
    if not env_file.exists():
        subprocess.run(  # noqa: S603  # fixed argv: this interpreter, git or stack.sh
            [str(REPO / "scripts" / "stack.sh"), "up"], check=True, stdout=subprocess.DEVNULL
        )
    env: dict[str, str] = {}
    for line in env_file.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name.strip()] = value.strip().strip("'\"")
    return {name: env[name] for name in STACK_VARS}


def _first_line(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)  # noqa: S603  # fixed argv: this interpreter, git or stack.sh
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def machine_info(redis_version: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, RAM, versions, commit."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    jars = sorted((REPO / ".stack" / "kafka-libs").glob("kafka-server-[0-9]*.jar"))
    kafka = jars[-1].stem.removeprefix("kafka-server-") if jars else "unknown"
    import aiokafka
    import redis as redis_py

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "ram_gib": round(int(total.group(1)) / 1024 / 1024, 1) if total else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": kafka,
        "redis": redis_version or "unknown",
        "aiokafka": aiokafka.__version__,
        "redis_py": redis_py.__version__,
        "git_commit": _first_line([GIT, "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(
            subprocess.run(  # noqa: S603  # fixed argv: this interpreter, git or stack.sh
                [GIT, "-C", str(REPO), "status", "--porcelain", "--", "processor", "schemas"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        ),
        "processor_diff_sha256": _diff_digest(),
        "load_avg_at_start": list(os.getloadavg()),
    }


def _diff_digest() -> str | None:
    """Short sha256 of the uncommitted diff of `processor/` and `schemas/` (None if clean)."""
    import hashlib

    diff = subprocess.run(  # noqa: S603  # fixed argv: this interpreter, git or stack.sh
        [GIT, "-C", str(REPO), "diff", "HEAD", "--", "processor", "schemas"],
        capture_output=True,
        check=False,
    ).stdout
    untracked = subprocess.run(  # noqa: S603  # same as above
        [
            GIT,
            "-C",
            str(REPO),
            "ls-files",
            "--others",
            "--exclude-standard",
            "processor",
            "schemas",
        ],
        capture_output=True,
        check=False,
    ).stdout
    for name in untracked.decode().split():
        with contextlib.suppress(OSError):
            diff += (REPO / name).read_bytes()
    return hashlib.sha256(diff).hexdigest()[:12] if diff else None


async def redis_version(url: str) -> str:
    """The Redis server's version."""
    client = Redis.from_url(url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return str(info.get("redis_version", "unknown"))


def new_name(stem: str) -> str:
    """A unique sandbox name (topic prefix, key prefix and app id)."""
    return f"b-{stem}-{uuid.uuid4().hex[:8]}"


@dataclass
class Sandbox:
    """One benchmark run's own topic prefix, Redis key prefix, app id and data folder."""

    stack: dict[str, str]
    name: str
    topic_name: str = ""
    """Topic prefix name; defaults to `name` (several apps may share one pre-filled topic)."""
    partitions: int = 8
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.topic_name:
            self.topic_name = self.name

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap servers."""
        return self.stack["SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def redis_url(self) -> str:
        """Redis URL."""
        return self.stack["SENDGUARD_REDIS_URL"]

    @property
    def data_dir(self) -> Path:
        """Working folder of the run (worker log, Faust data)."""
        return CACHE / "runs" / self.name

    def topic(self, role: str) -> str:
        """Full name of a topic role in this sandbox."""
        return f"{self.topic_name}.{role}"

    def env(self) -> dict[str, str]:
        """Environment of a `sendguard` process confined to this sandbox."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENDGUARD_")}
        env.update(self.stack)
        env.update(
            {
                "SENDGUARD_TOPIC_PREFIX": f"{self.topic_name}.",
                "SENDGUARD_REDIS_KEY_PREFIX": self.name,
                "SENDGUARD_APP_ID": self.name,
                "SENDGUARD_DATA_DIR": str(self.data_dir / "data"),
                "SENDGUARD_TOPIC_PARTITIONS": str(self.partitions),
                "SENDGUARD_KAFKA_SESSION_TIMEOUT_S": "6",
                "SENDGUARD_KAFKA_GROUP_INSTANCE_ID": f"{self.name}-worker",
            }
        )
        env.update(self.extra_env)
        return env


def run_cli(sandbox: Sandbox, *args: str, timeout_s: float = 120) -> str:
    """Run a `sendguard` command in the sandbox; returns stdout, raises on failure."""
    sandbox.data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603  # fixed argv: this interpreter, git or stack.sh
        [sys.executable, "-m", "processor", *args],
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=sandbox.data_dir,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sendguard {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (None if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s*(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


_FAUST_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\] \[\d+\] \[(\w+)\] (.*)$")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stack_pids() -> dict[str, int]:
    """Process ids of the local stack's Kafka broker and Redis server (if known)."""
    pids = {}
    for name in ("kafka", "redis"):
        path = REPO / ".stack" / f"{name}.pid"
        with contextlib.suppress(OSError, ValueError):
            pids[name] = int(path.read_text().strip())
    return pids


def parse_log_line(raw: str) -> dict[str, Any] | None:
    """A worker log line as {"at": epoch seconds, "level", "message"}, or None.

    The worker logs JSON lines until Faust starts, then Faust's own format (local time).
    """
    found = _FAUST_LINE.match(raw)
    if found:
        local = time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S"))
        return {
            "at": local + int(found.group(2)) / 1000,
            "level": found.group(3).lower(),
            "message": found.group(4).strip(),
        }
    with contextlib.suppress(ValueError):
        parsed = json.loads(raw)
        if isinstance(parsed, dict) and "at" in parsed:
            parsed["at"] = datetime.fromisoformat(str(parsed["at"])).timestamp()
            return parsed
    return None


class WorkerProcess:
    """`sendguard worker` as a real process (optionally under a profiler).

    `member` > 0 makes it one more process of the same app and consumer groups, with its own
    static member id, Faust data folder and log, as a second worker on the host would be.
    """

    def __init__(
        self, sandbox: Sandbox, *, profile_to: Path | None = None, member: int = 0
    ) -> None:
        self.sandbox = sandbox
        self.member = member
        self.process: subprocess.Popen[bytes] | None = None
        suffix = f"-{member}" if member else ""
        self.log_path = sandbox.data_dir / f"worker{suffix}.log"
        self.profile_to = profile_to
        self.peak_rss = 0
        self.rss_samples: list[int] = []

    def start(self) -> None:
        """Start the process (does not wait)."""
        self.sandbox.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "processor", "worker"]
        if self.profile_to is not None:
            command = [
                sys.executable,
                "-m",
                "pyinstrument",
                "--renderer",
                "text",
                "--show-all",
                "-o",
                str(self.profile_to),
                "-m",
                "processor",
                "worker",
            ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603  # fixed argv: this interpreter, git or stack.sh
                command,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.sandbox.data_dir,
            )

    def _env(self) -> dict[str, str]:
        env = self.sandbox.env()
        if self.member:
            env["SENDGUARD_KAFKA_GROUP_INSTANCE_ID"] += f"-{self.member}"
            env["SENDGUARD_DATA_DIR"] += f"-{self.member}"
        return env

    def log_lines(self) -> list[dict[str, Any]]:
        """The worker's log lines so far, parsed (see `parse_log_line`)."""
        if not self.log_path.exists():
            return []
        parsed = (
            parse_log_line(raw) for raw in self.log_path.read_text(errors="replace").splitlines()
        )
        return [line for line in parsed if line is not None]

    def first_log(self, message: str) -> dict[str, Any] | None:
        """The first log line whose message starts with `message`."""
        for line in self.log_lines():
            if str(line.get("message", "")).startswith(message):
                return line
        return None

    def sample_rss(self) -> int | None:
        """Record and return the current RSS."""
        if self.process is None:
            return None
        rss = rss_bytes(self.process.pid)
        if rss is not None:
            self.rss_samples.append(rss)
            self.peak_rss = max(self.peak_rss, rss)
        return rss

    async def wait_ready(self, timeout_s: float = 120) -> None:
        """Wait until Faust and the detection consumer both say they are ready."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            if "Worker ready" in text and "detection consumer ready" in text:
                return
            if self.process is not None and self.process.poll() is not None:
                break
            self.sample_rss()
            await asyncio.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
        await self.stop()
        raise RuntimeError(f"worker did not become ready; log tail:\n{tail}")

    async def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110  # polling a child process
                await asyncio.sleep(0.1)
            if self.process.poll() is None:
                self.process.kill()
        code = self.process.wait()
        self.process = None
        return code


async def delete_keys(redis_url: str, prefix: str) -> int:
    """Delete every Redis key under `prefix:`; returns how many."""
    client = Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


async def remove_sandbox(sandbox: Sandbox) -> None:
    """Delete a sandbox's Redis keys and topics (what a benchmark run leaves behind)."""
    await delete_keys(sandbox.redis_url, sandbox.name)
    await delete_topics(sandbox.bootstrap, sandbox.name)


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete the topics whose names start with `prefix` (best effort)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    except Exception as exc:  # noqa: BLE001  # clean-up must not hide the results
        print(f"(could not delete topics {prefix}*: {exc})", file=sys.stderr)
    finally:
        await admin.close()


def bench_start_at() -> datetime:
    """Workload start: midnight UTC two days ago (events in the past, not in the future)."""
    today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=2)


def event_lines(count: int, seed: int = 1) -> Path:
    r"""A cached file of `count` events as `key\\tjson` lines: demo mixes, tenants per seed.

    Successive demo mixes (seeds seed, seed+1, ...) with their tenants renamed per seed are
    merged until `count` events are reached; the file is generated once per day and count.
    """
    start_at = bench_start_at()
    path = CACHE / f"events-{count}-s{seed}-{start_at:%Y%m%d}.tsv"
    if path.exists():
        return path
    from dataclasses import replace

    from processor.simulation.profiles import demo_profiles
    from processor.simulation.workload import expected_event_count, merged_events, to_json_line

    profiles = []
    expected = 0.0
    mix = 0
    while expected < count * 1.05:
        for p in demo_profiles(seed + mix):
            profiles.append(replace(p, tenant_id=f"{p.tenant_id}-m{mix}"))
            expected += expected_event_count(profiles[-1])
        mix += 1
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    started = time.monotonic()
    written = 0
    with tmp.open("w") as out:
        for event in merged_events(profiles, seed, start_at):
            key = campaign_key(event.tenant_id, event.campaign_id)
            out.write(f"{key}\t{to_json_line(event)}\n")
            written += 1
            if written >= count:
                break
    tmp.rename(path)
    print(f"generated {written} events in {time.monotonic() - started:.1f} s -> {path}")
    return path


def read_lines(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of an `event_lines` file."""
    with path.open("rb") as source:
        for line in source:
            key, _, value = line.rstrip(b"\n").partition(b"\t")
            yield key, value


class PartitionBatches:
    """Keyed records in one batch per partition, sent a whole batch at a time.

    Partitions are chosen as aiokafka's default partitioner would, once per key: its murmur2
    is pure Python (7 us a call here) and the workload has few keys (one per campaign), so a
    producer that stands in for an MTA on another machine doesn't take the worker's CPU with it.
    Far cheaper than a send per record.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: list[int]) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = partitions
        self.partitioner = DefaultPartitioner()
        self.partition_of: dict[bytes, int] = {}
        self.batches: dict[int, Any] = {}
        self.pending: list[asyncio.Future[Any]] = []
        """Deliveries of the batches sent so far (not yet awaited)."""

    async def add(self, key: bytes, value: bytes) -> None:
        """Add a record; a partition's batch that is full is sent first."""
        part = self.partition_of.get(key)
        if part is None:
            part = self.partition_of[key] = self.partitioner(key, self.partitions, self.partitions)
        batch = self.batches.get(part)
        if batch is None:
            batch = self.batches[part] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            self.pending.append(await self.producer.send_batch(batch, self.topic, partition=part))
            batch = self.batches[part] = self.producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)

    async def send(self) -> None:
        """Send every partition's batch gathered so far."""
        for part, batch in self.batches.items():
            if batch.record_count():
                self.pending.append(
                    await self.producer.send_batch(batch, self.topic, partition=part)
                )
        self.batches = {}

    async def settle(self, more_than: int = 0) -> None:
        """Wait for the sent batches to be acknowledged, if more than `more_than` are pending."""
        if len(self.pending) > more_than:
            await asyncio.gather(*self.pending)
            self.pending = []


async def produce_all(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]], partitions: int
) -> tuple[int, float]:
    """Produce keyed records fast (acks=1, big batches, no compression); (count, seconds)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=50,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
        compression_type=None,
    )
    await producer.start()
    out = PartitionBatches(producer, topic, list(range(partitions)))
    started = time.monotonic()
    count = 0
    try:
        for key, value in records:
            await out.add(key, value)
            count += 1
            await out.settle(more_than=63)
        await out.send()
        await out.settle()
    finally:
        await producer.stop()
    return count, time.monotonic() - started


async def end_offsets(bootstrap: str, topic: str, partitions: int = 8) -> dict[int, int]:
    """High-water mark of each of the `partitions` partitions of `topic`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


def median(values: Iterable[float]) -> float:
    """The median (of at least one value)."""
    return float(statistics.median(list(values)))


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on sorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write `result` to bench/results/<name>-<UTC stamp>.json and <name>-latest.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2, sort_keys=False, default=str) + "\n"
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(text)
    (RESULTS / f"{name}-latest.json").write_text(text)
    return path


class BackgroundStream:
    """Runs `bench.background` (its own process) to produce a file's records at a steady rate.

    Its own process, like the MTA on another machine: the driver's event loop, which times
    what the benchmark measures, is not also busy producing.
    """

    def __init__(self, bootstrap: str, topic: str, path: Path, rate: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.path = path
        self.rate = rate
        self.produced = 0
        self.seconds = 0.0
        self.started: float | None = None
        self.pid: int | None = None
        self._process: asyncio.subprocess.Process | None = None

    def stop(self) -> None:
        """Ask the producing process to stop (it reports its count, then exits)."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)

    @property
    def achieved_rate(self) -> float:
        """Events/s produced, as last reported by the producing process."""
        return self.produced / self.seconds if self.seconds > 0 else 0.0

    async def run(self) -> None:
        """Start the producing process and follow its reports until it exits."""
        process = self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.background",
            self.bootstrap,
            self.topic,
            str(self.path),
            str(self.rate),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        self.pid = process.pid
        self.started = time.monotonic()
        assert process.stdout is not None  # noqa: S101  # piped just above
        try:
            async for line in process.stdout:
                report = json.loads(line)
                self.produced, self.seconds = report["produced"], report["seconds"]
        finally:
            self.stop()
            await process.wait()


async def group_lag(bootstrap: str, group: str, topic: str, partitions: int = 8) -> int:
    """Events of `topic` not yet committed by consumer group `group`."""
    from aiokafka.admin import AIOKafkaAdminClient

    ends = await end_offsets(bootstrap, topic, partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
    return sum(end - max(0, committed.get(p, 0)) for p, end in ends.items())


async def tail(bootstrap: str, topic: str, partitions: int = 8) -> Any:
    """A group-less consumer of every partition of `topic`, positioned at its end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer


def host_cpu() -> dict[str, float]:
    """Host-wide CPU contention counters so far (Linux): seconds of steal and of CPU pressure.

    Steal is time the hypervisor gave this VM's vCPUs to others; CPU pressure ("some") is
    time at least one runnable task waited for a CPU (PSI). Missing ones are left out.
    """
    counters: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        counters["steal_s"] = int(fields[8]) / os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError, ValueError, IndexError):
        some = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
        counters["cpu_pressure_s"] = int(some.rsplit("total=", 1)[1]) / 1e6
    return counters


def host_contention(
    before: dict[str, float], after: dict[str, float], wall_s: float
) -> dict[str, float]:
    """`host_cpu` deltas per wall second: cores stolen, and the share of time a task waited."""
    names = {"steal_s": "steal_cores", "cpu_pressure_s": "cpu_pressure_share"}
    return {
        label: round((after[name] - before[name]) / wall_s, 3)
        for name, label in names.items()
        if name in before and name in after and wall_s > 0
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]
