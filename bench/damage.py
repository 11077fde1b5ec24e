"""Damage: messages a sending pipeline sends into a bad list before it reads the pause command.

Usage: `source .stack/env && .venv/bin/python -m bench.damage [--rate R] [--runs N]
[--delay async|smtp] [--quick]`.

A fresh `python -m processor worker` runs in its own sandbox. This process plays the sending
pipeline: it sends one campaign at R messages/s (default 2,000), producing a `sent` event per
message (occurred_at = now) into delivery-events, and the hard bounces come back after a
lognormal delay as `bounce`/`hard` events (occurred_at = when they come back): with
`--delay async` (the default) median 5 s, sigma 0.8, clipped to [2, 60] s, as bounce
notifications come; with `--delay smtp` median 0.3 s, sigma 0.6, clipped to [0.05, 3] s, as
rejections during the SMTP transaction come. It stops sending as soon as a consumer tailing
`<prefix>control` reads the campaign's pause command. Two scenarios, N runs each (seeds 1..N):

* `bad-list`: 20% of recipients hard-bounce from the first message (the spike begins at once);
* `onset`: 10,000 healthy messages (0.5% hard bounces), then 20% (the spike begins there).

Reported per run: messages sent after the spike began (the damage), split into the messages
sent before the default rule could first hold on the events that had come back (checked at
every returned bounce, the feedback-limited floor any real-time checker shares) and those sent
while sendguard decided and the pause travelled back to the pipeline; their medians.

Periodic checks (every hour, PostHog's cadence, and every 5 minutes) are simulated on the same
generator and seed, extended on an ideal schedule (message i sent at i/R): the same rule is
checked at phase + k*T for every whole-second phase in [0, T), and the damage is the messages
sent after the onset up to the first check at which the rule holds (an unlimited list).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import math
import random
import sys
import time
import uuid
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.common import (
    Sandbox,
    WorkerProcess,
    group_lag,
    load_average,
    machine_info,
    median,
    new_name,
    redis_version,
    remove_sandbox,
    run_cli,
    stack_env,
    tail,
    write_result,
)
from processor.domain.policy import DEFAULT_RULES, Policy, Rule, Severity, evaluate
from schemas.base import campaign_key
from schemas.control import Metric

PARTITIONS = 8
BAD_RATE = 0.20
HEALTHY_RATE = 0.005
ONSET_AFTER = 10_000


@dataclass(frozen=True)
class DelayModel:
    """How long a hard bounce takes to come back: lognormal, clipped."""

    median_s: float
    sigma: float
    min_s: float
    max_s: float

    def describe(self) -> str:
        """One line for the results."""
        return (
            f"lognormal median {self.median_s} s, sigma {self.sigma}, "
            f"clipped to [{self.min_s}, {self.max_s}] s"
        )


DELAYS = {
    # Bounce notifications (DSNs, provider webhooks) after the message was accepted.
    "async": DelayModel(5.0, 0.8, 2.0, 60.0),
    # Rejections during the SMTP transaction (550 5.1.1 at RCPT TO), reported by the MTA as
    # soon as the transaction ends: most hard bounces of a bad list are of this kind.
    "smtp": DelayModel(0.3, 0.6, 0.05, 3.0),
}
CADENCES_S = {"hourly": 3600, "every_5_min": 300}
RULE: Rule = next(
    r for r in DEFAULT_RULES if r.metric is Metric.HARD_BOUNCE and r.window == "lifetime"
)
Z = Policy(DEFAULT_RULES).z
BAR = 1.5 * RULE.min_denominator


def holds(bounces: int, sends: int) -> bool:
    """The default hard-bounce rule pauses on these counts (all windows agree within 1 h)."""
    return evaluate(RULE, bounces, sends, Z).severity is Severity.PAUSE


class Outcomes:
    """Per message: does it hard-bounce, and after how long (seeded, independent of timing)."""

    def __init__(self, seed: int, onset: int, delay: DelayModel) -> None:
        self._rng = random.Random(seed)
        self.onset = onset
        self._delay = delay

    def next(self, index: int) -> float | None:
        """Bounce delay in seconds of message `index` (taken in order), or None."""
        p = BAD_RATE if index >= self.onset else HEALTHY_RATE
        bounce = self._rng.random() < p
        model = self._delay
        delay = self._rng.lognormvariate(math.log(model.median_s), model.sigma)
        return min(model.max_s, max(model.min_s, delay)) if bounce else None


def _line(  # one event's fields
    event_id: str, tenant: str, campaign: str, i: int, at: float, *, bounce: bool
) -> bytes:
    body: dict[str, Any] = {
        "schema_version": 1,
        "event_id": event_id,
        "tenant_id": tenant,
        "campaign_id": campaign,
        "recipient": {"contact_id": f"r{i}", "address": f"r{i}@example{i % 11}.com"},
        "type": "bounce" if bounce else "sent",
        "occurred_at": datetime.fromtimestamp(at, tz=UTC).isoformat(),
        "provider": "bench",
    }
    if bounce:
        body["bounce_class"] = "hard"
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Run:
    """One live send until the pause was read."""

    scenario: str
    seed: int
    onset: int
    sends: list[float] = field(default_factory=list)
    bounces: list[tuple[float, int]] = field(default_factory=list)
    """(time produced, message index), in production order."""
    pause_read_at: float | None = None
    pause: dict[str, Any] | None = None


async def live_run(  # noqa: C901, PLR0917  # the pipeline's one loop
    scenario: str,
    seed: int,
    rate: float,
    delay: DelayModel,
    sandbox: Sandbox,
    consumer: Any,
    timeout_s: float,
) -> Run:
    """Send until the pause command for this campaign is read (or `timeout_s`)."""
    onset = ONSET_AFTER if scenario == "onset" else 0
    run = Run(scenario, seed, onset)
    tenant, campaign = f"dmg{uuid.uuid4().hex[:6]}", f"{scenario}-s{seed}"
    key = campaign_key(tenant, campaign).encode()
    topic = sandbox.topic("delivery-events")
    outcomes = Outcomes(seed, onset, delay)
    producer = AIOKafkaProducer(bootstrap_servers=sandbox.bootstrap, acks=1, linger_ms=5)
    await producer.start()
    due: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for messages in batches.values():
                for message in messages:
                    body = json.loads(message.value)
                    if message.key == key and body.get("command") == "pause":
                        run.pause_read_at, run.pause = now, body
                        stop.set()

    watcher = asyncio.create_task(watch())
    pending: list[asyncio.Future[Any]] = []
    started = time.time()
    try:
        while not stop.is_set() and time.time() - started < timeout_s:
            now = time.time()
            while len(run.sends) < int((now - started) * rate):
                i = len(run.sends)
                bounce_after = outcomes.next(i)
                run.sends.append(now)
                pending.append(
                    await producer.send(
                        topic, _line(f"s{i}", tenant, campaign, i, now, bounce=False), key=key
                    )
                )
                if bounce_after is not None:
                    heapq.heappush(due, (now + bounce_after, i))
            while due and due[0][0] <= now:
                _, i = heapq.heappop(due)
                run.bounces.append((now, i))
                pending.append(
                    await producer.send(
                        topic, _line(f"b{i}", tenant, campaign, i, now, bounce=True), key=key
                    )
                )
            if len(pending) > 500:
                await asyncio.gather(*pending)
                pending = []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.005)
        await asyncio.gather(*pending)
    finally:
        stop.set()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await producer.stop()
    return run


def analyse(run: Run) -> dict[str, Any]:
    """Damage of a live run and where it came from."""
    sent = len(run.sends)
    hold_at: float | None = None
    sends_at_hold: int | None = None
    for count, (at, _) in enumerate(run.bounces, start=1):
        sends_before = bisect_right(run.sends, at)
        if holds(count, sends_before):
            hold_at, sends_at_hold = at, sends_before
            break
    trigger_id = ((run.pause or {}).get("trigger") or {}).get("event_id")
    out: dict[str, Any] = {
        "scenario": run.scenario,
        "seed": run.seed,
        "onset_after_sends": run.onset,
        "paused": run.pause is not None,
        "sent_total": sent,
        "damage_sends_after_onset": sent - run.onset,
        "bounces_returned": len(run.bounces),
        "first_hold_sends_after_onset": None
        if sends_at_hold is None
        else sends_at_hold - run.onset,
        "sends_between_hold_and_pause_read": None
        if sends_at_hold is None
        else sent - sends_at_hold,
        "hold_to_pause_read_ms": None
        if hold_at is None or run.pause_read_at is None
        else round((run.pause_read_at - hold_at) * 1000, 1),
        "trigger_event": trigger_id,
        "evidence": {
            k: ((run.pause or {}).get("evidence") or {}).get(k)
            for k in ("window", "numerator", "denominator", "wilson_lower_bound")
        },
        "achieved_send_rate": round(sent / (run.sends[-1] - run.sends[0]), 1) if sent > 1 else None,
    }
    return out


def periodic(
    seed: int, onset: int, rate: float, delay: DelayModel, horizon: int = 600
) -> dict[str, Any]:
    """Damage of checking the rule every hour / 5 minutes, on the same outcomes, ideal schedule.

    The stream is simulated for `horizon` seconds; the rule is checked at every whole second of
    it. From its first hold on it holds at every second simulated (checked), and after that the
    returned bounce rate only climbs towards 20%, so a check at any later time finds it holding.
    """
    outcomes = Outcomes(seed, onset, delay)
    total = int(horizon * rate)
    arrivals = []
    for i in range(total):
        bounce_after = outcomes.next(i)
        if bounce_after is not None:
            arrivals.append(i / rate + bounce_after)
    arrivals.sort()

    def holds_at(t: float) -> bool:
        return holds(bisect_right(arrivals, t), min(total, math.floor(t * rate) + 1))

    first = next(t for t in range(1, horizon) if holds_at(t))
    result: dict[str, Any] = {
        "first_whole_second_rule_holds": first,
        "holds_at_every_second_until_horizon": all(holds_at(t) for t in range(first, horizon)),
        "horizon_s": horizon,
    }
    for name, period in CADENCES_S.items():
        damages = []
        for phase in range(period):
            check = phase if phase > 0 else period
            while check < first:
                check += period
            damages.append(math.floor(check * rate) + 1 - onset)
        result[name] = {
            "period_s": period,
            "mean_damage": round(sum(damages) / len(damages)),
            "median_damage": median(damages),
            "max_damage": max(damages),
            "min_damage": min(damages),
        }
    return result


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=2000, help="messages/s")
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario")
    parser.add_argument("--quick", action="store_true", help="2 runs per scenario")
    parser.add_argument(
        "--delay", choices=sorted(DELAYS), default="async", help="bounce delay model"
    )
    parser.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 2
    delay = DELAYS[args.delay]
    stack = stack_env()
    info = machine_info(await redis_version(stack["SENDGUARD_REDIS_URL"]))
    sandbox = Sandbox(stack, new_name("dmg"), partitions=PARTITIONS)
    run_cli(sandbox, "topics", "create")
    worker = WorkerProcess(sandbox)
    worker.start()
    runs: list[dict[str, Any]] = []
    consumer: Any = None
    try:
        await worker.wait_ready()
        consumer = await tail(sandbox.bootstrap, sandbox.topic("control"), PARTITIONS)
        for scenario in ("bad-list", "onset"):
            for seed in range(1, args.runs + 1):
                load = load_average()
                run = await live_run(scenario, seed, args.rate, delay, sandbox, consumer, 120)
                row = analyse(run)
                worker.sample_rss()
                row["load_avg"] = load
                row["worker_lag_after"] = await group_lag(
                    sandbox.bootstrap, f"{sandbox.name}-detect", sandbox.topic("delivery-events")
                )
                runs.append(row)
                print(
                    f"{scenario} seed {seed}: {row['damage_sends_after_onset']} sent after onset "
                    f"(rule first held after {row['first_hold_sends_after_onset']}, "
                    f"+{row['sends_between_hold_and_pause_read']} until the pause was read, "
                    f"{row['hold_to_pause_read_ms']} ms)"
                )
                await asyncio.sleep(2)
    finally:
        if consumer is not None:
            await consumer.stop()
        await worker.stop()
        if not args.keep:
            await remove_sandbox(sandbox)
    scenarios: dict[str, Any] = {}
    for scenario in ("bad-list", "onset"):
        rows = [r for r in runs if r["scenario"] == scenario]
        onset = rows[0]["onset_after_sends"]
        sim = [periodic(r["seed"], onset, args.rate, delay) for r in rows]
        damage = median(r["damage_sends_after_onset"] for r in rows)
        scenarios[scenario] = {
            "runs": len(rows),
            "all_paused": all(r["paused"] for r in rows),
            "median_damage": damage,
            "median_first_hold": median(r["first_hold_sends_after_onset"] or 0 for r in rows),
            "median_hold_to_pause_read_ms": median(r["hold_to_pause_read_ms"] or 0 for r in rows),
            "bar_met": damage < BAR,
            "periodic_mean_damage": {
                name: round(median(s[name]["mean_damage"] for s in sim)) for name in CADENCES_S
            },
            "periodic_by_seed": sim,
        }
        print(
            f"{scenario}: median damage {damage} (bar < {BAR:.0f}); hourly checks "
            f"{scenarios[scenario]['periodic_mean_damage']['hourly']:,}, every 5 min "
            f"{scenarios[scenario]['periodic_mean_damage']['every_5_min']:,} (mean over phases)"
        )
    result = {
        "benchmark": "damage",
        "command": "python -m bench.damage " + " ".join(argv or sys.argv[1:]),
        "machine": info,
        "load_avg_end": load_average(),
        "send_rate": args.rate,
        "bad_rate": BAD_RATE,
        "healthy_rate": HEALTHY_RATE,
        "onset_after": ONSET_AFTER,
        "bounce_delay": f"{args.delay}: {delay.describe()}",
        "rule": f"hard bounce: Wilson lower bound > {RULE.pause}, >= {RULE.min_denominator} "
        f"sends, >= {RULE.min_numerator} bounces",
        "bar": f"damage < {BAR:.0f} sends (1.5 x min sends)",
        "bar_met": all(s["bar_met"] for s in scenarios.values()),
        "scenarios": scenarios,
        "worker_peak_rss_mb": round(worker.peak_rss / 2**20, 1),
        "runs": runs,
    }
    written = write_result("damage", result)
    print(f"-> {written}")
    return result


if __name__ == "__main__":
    asyncio.run(main())
