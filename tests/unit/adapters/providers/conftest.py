"""Fixtures of the provider adapter tests: where provider payloads live, and loading them.

Shared samples are read in place, relative to the repository root, never copied or edited.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

REPO_ROOT = Path(__file__).resolve().parents[4]
PROVIDER_SAMPLES = REPO_ROOT.parent / "shared" / "provider-samples"
"""Real payloads from the providers' documentation (see its README.md)."""
FIXTURES = Path(__file__).resolve().parent / "fixtures"
"""Payloads written for these tests from the providers' documentation (Mailgun, SparkPost)."""


def _loader(root: Path) -> Callable[[str, str], Any]:
    def load(provider: str, name: str) -> Any:
        return json.loads((root / provider / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture
def shared_sample() -> Callable[[str, str], Any]:
    """Load `<provider>/<name>` from the team's shared provider samples."""
    if not PROVIDER_SAMPLES.is_dir():
        pytest.fail(f"shared provider samples not found at {PROVIDER_SAMPLES}")
    return _loader(PROVIDER_SAMPLES)


@pytest.fixture
def fixture_payload() -> Callable[[str, str], Any]:
    """Load `<provider>/<name>` from this directory's documented-payload fixtures."""
    return _loader(FIXTURES)
