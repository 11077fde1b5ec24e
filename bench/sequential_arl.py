"""Run lengths of the sequential rules' CUSUM, to choose h: false alarms at p0, delay at p1.

Usage: `.venv/bin/python -m bench.sequential_arl [--runs N] [--horizon T] [--seed S]`.

Monte Carlo of the Bernoulli CUSUM of `processor.domain.policy.SequentialRule` on i.i.d. trials
(no feedback lag: the lag shifts detection by the lag, it does not change the trial arithmetic),
jumping from one success to the next (the failures between are geometric), so a run of millions
of trials costs a few thousand steps. For each metric's default rule and a few h around it:
the share of runs of `--horizon` trials (a 500k-recipient campaign) that alarm at the worst
healthy rate of the quality mix, at p0 and at the drift mix's worst rate, and the median and
95th percentile of the trials to alarm at p1 and at the mildest bad rate of the mix.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import replace

from bench.common import median, percentile
from processor.domain.policy import DEFAULT_SEQUENTIAL, SequentialRule
from schemas.control import Metric

HEALTHY_MAX = {Metric.HARD_BOUNCE: 0.02, Metric.COMPLAINT: 0.0005, Metric.UNSUBSCRIBE: 0.008}
"""The worst healthy rate of the quality mix (processor.simulation.profiles.healthy_rates)."""
DRIFT_MAX = {Metric.HARD_BOUNCE: 0.03, Metric.COMPLAINT: 0.0008, Metric.UNSUBSCRIBE: 0.008}
"""The worst rate of the drift mix (bounces rising to 3%, weekday complaint noise)."""
BAD_MIN = {Metric.HARD_BOUNCE: 0.06, Metric.COMPLAINT: 0.003, Metric.UNSUBSCRIBE: 0.06}
"""The mildest bad rate of the quality mix."""


def run_length(rule: SequentialRule, p: float, horizon: int, rng: random.Random) -> int | None:
    """Trials until the CUSUM reaches h at rate p; None if not within `horizon`."""
    statistic, trials = 0.0, 0
    log_q = math.log1p(-p)
    while True:
        failures = int(math.log(1.0 - rng.random()) / log_q)
        if trials + failures + 1 > horizon:
            return None
        trials += failures + 1
        statistic = max(0.0, statistic + failures * rule.down) + rule.up
        if statistic >= rule.h:
            return trials


def alarm_share(rule: SequentialRule, p: float, horizon: int, runs: int, seed: int) -> float:
    """Share of `runs` streams of `horizon` trials at rate p that alarm."""
    rng = random.Random(f"{seed}/{rule}/{p}")
    return sum(run_length(rule, p, horizon, rng) is not None for _ in range(runs)) / runs


def delays(rule: SequentialRule, p: float, runs: int, seed: int) -> tuple[float, float]:
    """Median and p95 trials to alarm at rate p (an alarm is certain at a bad rate)."""
    rng = random.Random(f"{seed}/{rule}/{p}/delay")
    lengths = [float(run_length(rule, p, 1 << 40, rng) or 0) for _ in range(runs)]
    return median(lengths), percentile(lengths, 95)


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(
        f"{'metric':12} {'p0':>7} {'p1':>7} {'h':>5}  "
        f"{'alarm@healthy':>13} {'alarm@drift':>11} {'alarm@p0':>8}  "
        f"{'delay@p1 med/p95':>18}  {'delay@bad-min med/p95':>22}"
    )
    for default in DEFAULT_SEQUENTIAL:
        for h in (default.h - 2, default.h - 1, default.h, default.h + 1, default.h + 2):
            rule = replace(default, h=h, warn_h=min(default.warn_h, h))
            metric = rule.metric
            healthy = alarm_share(rule, HEALTHY_MAX[metric], args.horizon, args.runs, args.seed)
            drift = alarm_share(rule, DRIFT_MAX[metric], args.horizon, args.runs, args.seed)
            at_p0 = alarm_share(rule, rule.p0, args.horizon, args.runs, args.seed)
            at_p1 = delays(rule, rule.p1, args.runs, args.seed)
            at_bad = delays(rule, BAD_MIN[metric], args.runs, args.seed)
            mark = " <- default" if h == default.h else ""
            print(
                f"{metric.value:12} {rule.p0:7.4f} {rule.p1:7.4f} {h:5.1f}  "
                f"{healthy:13.3f} {drift:11.3f} {at_p0:8.3f}  "
                f"{at_p1[0]:8.0f}/{at_p1[1]:<9.0f}  {at_bad[0]:10.0f}/{at_bad[1]:<11.0f}{mark}"
            )


if __name__ == "__main__":
    main()
