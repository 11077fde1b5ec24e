"""Classifier speed: SMTP answers classified per second, over the shared sample texts.

Usage: `.venv/bin/python -m bench.classifier [--seconds S]` (no stack needed).

Three sets, each classified in a loop for S seconds (default 3) on one core, parsing included
(`classify_text`, what an adapter calls per bounce):

1. samples: every diagnostic text of the shared samples, read in place: the Diagnostic-Code and
   Status of each recipient of `../shared/mta-samples/kumomta/rfc3464/*.eml`, and the `reason`,
   `response`, `status`, `diagnosticCode` and `Details` strings of `../shared/provider-samples`;
2. codes: the `reply class.subject.detail` lines KumoMTA's IANA rule file covers (codes, no text);
3. worst case: a text of MAX_TEXT_CHARS (1,000) characters no rule matches (every rule is
   tried, nothing found).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import json
import re
import time
from email.message import Message
from typing import Any

from bench.common import REPO, machine_info, write_result
from processor.domain.smtp_classifier import MAX_TEXT_CHARS, classify_text

SHARED = REPO.parent / "shared"
_TEXT_KEYS = frozenset({"reason", "response", "status", "diagnosticCode", "Details"})


def _strings(value: Any) -> list[str]:
    """The diagnostic strings inside a provider payload (SNS messages are JSON in a string)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in _TEXT_KEYS and isinstance(inner, str) and inner.strip():
                found.append(inner)
            elif key == "Message" and isinstance(inner, str) and inner.startswith("{"):
                found += _strings(json.loads(inner))
            else:
                found += _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            found += _strings(inner)
    return found


def _dsn_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted((SHARED / "mta-samples" / "kumomta" / "rfc3464").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
        for part in message.walk():
            payload = part.get_payload()
            if part.get_content_type() != "message/delivery-status" or not isinstance(
                payload, list
            ):
                continue
            for block in payload:
                if isinstance(block, Message) and block.get("Action"):
                    status = str(block.get("Status") or "")
                    diagnostic = str(block.get("Diagnostic-Code") or "")
                    texts.append(re.sub(r"\s+", " ", f"{diagnostic} {status}").strip())
    return texts


def sample_texts() -> list[str]:
    """Every diagnostic text of the shared samples."""
    texts = _dsn_texts()
    for path in sorted((SHARED / "provider-samples").rglob("*.json")):
        texts += _strings(json.loads(path.read_text(encoding="utf-8")))
    return texts


def code_lines() -> list[str]:
    """Code-only answers across the ranges KumoMTA's IANA rule file covers."""
    replies = (421, 450, 451, 452, 525, 550, 551, 552, 553, 554)
    return [
        f"{reply} {klass}.{subject}.{detail}"
        for reply, klass, subject, detail in itertools.product(replies, (4, 5), range(8), range(31))
    ]


def rate(texts: list[str], seconds: float) -> dict[str, Any]:
    """Classifications per second of `texts`, looped for about `seconds`."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for text in texts:
            classify_text(text)
        done += len(texts)
    elapsed = time.perf_counter() - started
    return {
        "texts": len(texts),
        "classified": done,
        "seconds": round(elapsed, 3),
        "per_second": round(done / elapsed),
        "microseconds_each": round(elapsed / done * 1e6, 2),
    }


def main() -> None:
    """Run the three sets and write bench/results/classifier-*.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    samples = sample_texts()
    worst = [("lorem ipsum dolor sit amet " * 100)[:MAX_TEXT_CHARS]]
    result = {
        "machine": machine_info(),
        "samples": rate(samples, args.seconds),
        "codes": rate(code_lines(), args.seconds),
        "worst_case_longest_text": rate(worst, args.seconds),
    }
    for name in ("samples", "codes", "worst_case_longest_text"):
        figures = result[name]
        print(  # a benchmark reports on stdout
            f"{name:>22}: {figures['per_second']:>9,} /s "
            f"({figures['microseconds_each']} us each, {figures['texts']} texts)"
        )
    print(write_result("classifier", result))  # where the JSON went


if __name__ == "__main__":
    main()
