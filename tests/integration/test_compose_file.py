"""docker-compose.yml: a valid file that runs Kafka (KRaft), Redis, topic set-up and the worker.

Where `docker compose` is installed the file is also checked by Compose itself; the
structural checks run everywhere, with PyYAML.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
STACK_POM = REPO / "scripts" / "stack" / "pom.xml"

# Topic (without the `sendguard.` prefix) -> whether it is compacted.
EXPECTED_TOPICS: dict[str, bool] = {
    "delivery-events": False,
    "audience": False,
    "contact-updates": True,
    "resume-requests": False,
    "resume-outcomes": False,
    "control": False,
    "recipient-sets": False,
    "health": True,
    "dead-letter": False,
    "webhooks-raw": False,
}
EXPECTED_PARTITIONS = 8


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), "docker-compose.yml must be a mapping"
    return cast("dict[str, Any]", loaded)


def _service(name: str) -> dict[str, Any]:
    services = _compose().get("services")
    assert isinstance(services, dict), "docker-compose.yml has no services mapping"
    service = services.get(name)
    assert isinstance(service, dict), f"service {name!r} is missing"
    return cast("dict[str, Any]", service)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever of the two Compose forms it uses."""
    env = service.get("environment", {})
    if isinstance(env, list):
        pairs = (str(item).partition("=") for item in env)
        return {name: value for name, _, value in pairs}
    assert isinstance(env, dict)
    return {str(name): str(value) for name, value in env.items()}


def _topic_commands() -> dict[str, list[str]]:
    """The `kafka-topics.sh --create` command lines of topic-init, keyed by topic name."""
    command = _service("topic-init").get("command", "")
    text = "\n".join(command) if isinstance(command, list) else str(command)
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if not words or not words[0].endswith("kafka-topics.sh") or "--create" not in words:
            continue
        topic = words[words.index("--topic") + 1]
        assert topic not in found, f"topic {topic} is created twice"
        found[topic] = words
    return found


def _option_values(words: list[str], option: str) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == option]


def _docker_compose_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run(  # noqa: S603 - fixed argv, docker from PATH
        [docker, "compose", "version"], capture_output=True, check=False, timeout=60
    )
    return probe.returncode == 0


def test_docker_compose_accepts_the_file() -> None:
    """`docker compose config -q` finds no error in the file (where Compose is installed)."""
    if not _docker_compose_available():
        pytest.skip("docker compose is not installed here; structural checks cover the file")
    docker = shutil.which("docker")
    assert docker is not None
    result = subprocess.run(  # noqa: S603 - fixed argv, docker from PATH
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_the_four_services_are_defined() -> None:
    """Kafka, Redis, the topic-creating job and the sendguard worker are all services."""
    services = _compose()["services"]
    assert {"kafka", "redis", "topic-init", "sendguard"} <= set(services)


def test_kafka_is_the_official_image_in_kraft_mode() -> None:
    """Kafka runs from a pinned apache/kafka image as one KRaft broker+controller."""
    kafka = _service("kafka")
    image = str(kafka["image"])
    assert image.startswith("apache/kafka:")
    tag = image.partition(":")[2]
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin an exact Kafka version, not {tag!r}"

    env = _environment(kafka)
    assert env["KAFKA_NODE_ID"] == "1"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "CLUSTER_ID is a base64 UUID"
    for setting in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[setting] == "1", f"{setting} must be 1 on a single node"
    assert "healthcheck" in kafka


def test_kafka_image_matches_the_test_broker_version() -> None:
    """Compose and scripts/stack.sh run the same Kafka release."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", STACK_POM.read_text("utf-8"))
    assert match is not None, "scripts/stack/pom.xml declares no kafka.version"
    assert _service("kafka")["image"] == f"apache/kafka:{match.group(1)}"
    assert _service("topic-init")["image"] == _service("kafka")["image"]


def test_published_ports_are_loopback_only() -> None:
    """Every port published to the host binds 127.0.0.1, never all interfaces."""
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_redis_is_version_7_with_a_healthcheck() -> None:
    """Redis 7 reports healthy only once it answers PING."""
    redis = _service("redis")
    assert str(redis["image"]).startswith("redis:7")
    assert "ping" in [str(word).lower() for word in redis["healthcheck"]["test"]]


def test_topic_init_creates_every_topic_with_its_partitions_and_compaction() -> None:
    """Each sendguard topic is created once, idempotently, with 8 partitions; two are compacted."""
    topic_init = _service("topic-init")
    assert topic_init["depends_on"]["kafka"]["condition"] == "service_healthy"
    commands = _topic_commands()
    assert set(commands) == {f"sendguard.{name}" for name in EXPECTED_TOPICS}
    for name, compacted in EXPECTED_TOPICS.items():
        words = commands[f"sendguard.{name}"]
        assert "--if-not-exists" in words, name
        assert _option_values(words, "--bootstrap-server") == ["kafka:9092"], name
        assert _option_values(words, "--partitions") == [str(EXPECTED_PARTITIONS)], name
        assert _option_values(words, "--replication-factor") == ["1"], name
        configs = _option_values(words, "--config")
        assert ("cleanup.policy=compact" in configs) is compacted, name


def test_worker_is_built_here_and_points_at_the_compose_stack() -> None:
    """The worker is built from this repo and starts once the topics exist and Redis is up."""
    worker = _service("sendguard")
    build = worker["build"]
    context = build.get("context") if isinstance(build, dict) else build
    assert context in {".", "./"}
    assert (REPO / "Dockerfile").is_file()
    env = _environment(worker)
    assert env["SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["SENDGUARD_REDIS_URL"] == "redis://redis:6379/0"
    depends = worker["depends_on"]
    assert depends["topic-init"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"
