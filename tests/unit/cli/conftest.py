"""The CLI tests' world: no SENDGUARD_* variable or `.env` of the caller's, a runner per test."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner, Result

from processor.cli import main

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


class Sendguard:
    """Runs `sendguard ARGS` in-process; stdout and stderr kept apart."""

    def __init__(self, runner: CliRunner, env: Mapping[str, str] | None = None) -> None:
        self._runner = runner
        self._env = dict(env or {})

    def with_env(self, **env: str) -> Sendguard:
        """The same runner with these environment variables set."""
        return Sendguard(self._runner, {**self._env, **env})

    def __call__(self, *args: str, stdin: str | bytes | None = None) -> Result:
        """The result of `sendguard ARGS` (exceptions other than SystemExit are re-raised)."""
        result = self._runner.invoke(
            main, list(args), input=stdin, env=self._env, prog_name="sendguard"
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result


@pytest.fixture
def sendguard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sendguard:
    """`sendguard` with a clean environment, run from an empty directory (no `.env`)."""
    for name in os.environ:
        if name.startswith("SENDGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return Sendguard(CliRunner())
