"""DSN parsing speed: returned messages normalized per second, over the shared samples.

Usage: `.venv/bin/python -m bench.dsn [--seconds S]` (no stack needed).

Every message of `../shared/mta-samples/kumomta/rfc3464/*.eml` and `rfc5965/*.eml`, read in
place, normalized in a loop for S seconds (default 3) on one core with `normalize_mail`: MIME
parsing, the delivery-status or feedback fields, the classifier, attribution and event
validation (what the listener does per message, Kafka aside).
"""

from __future__ import annotations

import argparse
import itertools
import time
from datetime import UTC, datetime

from bench.common import REPO, machine_info, write_result
from processor.adapters.mail import Envelope, MailAttribution, normalize_mail

SAMPLES = REPO.parent / "shared" / "mta-samples" / "kumomta"


def _rate(messages: list[bytes], seconds: float) -> dict[str, float]:
    envelope = Envelope(received_at=datetime.now(UTC))
    attribution = MailAttribution(fallback_tenant_id="acme", fallback_campaign_id="c1")
    done, events = 0, 0
    started = time.perf_counter()
    deadline = started + seconds
    for data in itertools.cycle(messages):
        events += len(normalize_mail(data, envelope, attribution).result.events)
        done += 1
        if done % len(messages) == 0 and time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    return {
        "messages": done,
        "events": events,
        "per_second": round(done / elapsed),
        "us_per_message": round(1e6 * elapsed / done, 1),
    }


def main() -> None:
    """Measure and write bench/results/dsn-<stamp>.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    dsn = [p.read_bytes() for p in sorted((SAMPLES / "rfc3464").glob("*.eml"))]
    arf = [p.read_bytes() for p in sorted((SAMPLES / "rfc5965").glob("*.eml"))]
    result = {
        "machine": machine_info(),
        "seconds": args.seconds,
        "dsn_samples": len(dsn),
        "arf_samples": len(arf),
        "dsn": _rate(dsn, args.seconds),
        "arf": _rate(arf, args.seconds),
    }
    print(result["dsn"], result["arf"])
    print(write_result("dsn", result))  # where the JSON went


if __name__ == "__main__":
    main()
