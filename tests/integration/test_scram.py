"""SASL/SCRAM-SHA-256 against a real broker: the listener scripts/stack.sh starts.

A stack started before the listener existed has none: the test then skips, saying so.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import pytest

from tests.integration.conftest import run_cli

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

SCRAM_VARIABLES = (
    "SENDGUARD_STACK_SCRAM_BOOTSTRAP",
    "SENDGUARD_STACK_SCRAM_USERNAME",
    "SENDGUARD_STACK_SCRAM_PASSWORD",
)


@pytest.fixture
def scram(sandbox: Sandbox) -> Sandbox:
    """The sandbox's processes connect to the SCRAM listener with the stack's credential."""
    if not all(os.environ.get(name) for name in SCRAM_VARIABLES):
        pytest.skip(
            "the running stack has no SCRAM listener (started before it existed): "
            "scripts/stack.sh down && up, or scripts/test.sh, gives one"
        )
    sandbox.extra_env.update(
        {
            "SENDGUARD_KAFKA_BOOTSTRAP_SERVERS": os.environ["SENDGUARD_STACK_SCRAM_BOOTSTRAP"],
            "SENDGUARD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "SENDGUARD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "SENDGUARD_KAFKA_SASL_USERNAME": os.environ["SENDGUARD_STACK_SCRAM_USERNAME"],
            "SENDGUARD_KAFKA_SASL_PASSWORD": os.environ["SENDGUARD_STACK_SCRAM_PASSWORD"],
        }
    )
    return sandbox


def test_topics_are_created_over_scram_sha_256(scram: Sandbox) -> None:
    """With the right credential `sendguard topics create` authenticates and creates them."""
    result = run_cli(scram, "topics", "create")
    assert result.returncode == 0, result.stderr
    assert f"{scram.topic('resume-requests')}" in result.stdout
    again = run_cli(scram, "topics", "create")
    assert again.returncode == 0, again.stderr


def test_a_wrong_password_fails_fast_with_exit_2_and_never_prints_it(scram: Sandbox) -> None:
    """Authentication fails: exit status 2, one error, the password nowhere in the output."""
    wrong = "not-the-password-3f9c1e"
    scram.extra_env["SENDGUARD_KAFKA_SASL_PASSWORD"] = wrong
    started = time.monotonic()
    result = run_cli(scram, "topics", "create", timeout_s=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert "sendguard: " in result.stderr
    assert "Traceback" not in result.stderr
    for output in (result.stdout, result.stderr):
        assert wrong not in output
        assert os.environ["SENDGUARD_STACK_SCRAM_PASSWORD"] not in output
    assert elapsed < 30  # seconds: a refusal, not a hang until some timeout
