"""Paired comparison of two methods on the same test rows (issue 24): McNemar's exact test over the rows of
every seed both ran, pooled, and the smallest accuracy difference it could detect (its power).

A seed's cell holds "correct": one '1'/'0' per test row in order. Two methods run with the same seed see the
same test rows, so each row is a pair; only the rows where exactly one of them is right carry information.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

ALPHA, POWER = 0.05, 0.8


class Paired(NamedTuple):
    rows: int  # pairs pooled over the common seeds
    method_only: int  # rows only the method got right
    baseline_only: int  # rows only the baseline got right
    p_value: float  # McNemar's exact (binomial) two-sided p
    detectable: float  # accuracy difference (points) this many pairs detect with POWER at ALPHA

    @property
    def difference(self) -> float:
        """Method minus baseline, in accuracy points."""
        return 100 * (self.method_only - self.baseline_only) / self.rows

    def verdict(self, p_value: float | None = None) -> str:
        """For the claim "method >= baseline": holds (significantly better), does not hold (significantly
        worse), or undecided at this power; judged at `p_value` where a correction adjusted this test's p."""
        if (self.p_value if p_value is None else p_value) < ALPHA:
            return "holds" if self.difference > 0 else "does not hold"
        return "undecided"


def mcnemar(method_cells: dict[int, str], baseline_cells: dict[int, str]) -> Paired | None:
    """The paired test over the seeds both have per-row results for (seed -> correct string); None if none."""
    seeds = sorted(set(method_cells) & set(baseline_cells))
    pairs = [(a == "1", b == "1") for seed in seeds if len(method_cells[seed]) == len(baseline_cells[seed])
             for a, b in zip(method_cells[seed], baseline_cells[seed])]
    if not pairs:
        return None
    method_only = sum(a and not b for a, b in pairs)
    baseline_only = sum(b and not a for a, b in pairs)
    discordant = method_only + baseline_only
    p_value = exact_two_sided(min(method_only, baseline_only), discordant)
    return Paired(len(pairs), method_only, baseline_only, p_value, detectable_difference(len(pairs), discordant / len(pairs)))


def holm(p_values: dict[str, float], family: int) -> dict[str, float]:
    """Holm's step-down adjusted p per test, in a family of `family` tests of which these are measured.

    The k-th smallest p is multiplied by (family - k + 1), and no adjusted p is below one ranked ahead of it.
    Tests not measured yet count as p = 1 (ranked last), so a later one can only lower these adjusted p's.
    """
    adjusted, running = {}, 0.0
    for rank, (name, p_value) in enumerate(sorted(p_values.items(), key=lambda item: item[1])):
        running = max(running, min(1.0, (family - rank) * p_value))
        adjusted[name] = running
    return adjusted


def exact_two_sided(smaller: int, discordant: int) -> float:
    """McNemar's exact p: twice the chance of at most `smaller` successes in `discordant` fair coin flips."""
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(smaller + 1)) / 2 ** discordant
    return min(1.0, 2 * tail)


def detectable_difference(rows: int, discordant_share: float) -> float:
    """Accuracy difference (points) McNemar's test detects with POWER at two-sided ALPHA, for `rows` pairs of
    which this share disagree (Connor's normal approximation: d = (z_a + z_b) * sqrt(share / rows))."""
    z = NormalDist().inv_cdf(1 - ALPHA / 2) + NormalDist().inv_cdf(POWER)
    return 100 * z * math.sqrt(max(discordant_share, 1 / rows) / rows)


def p_text(p_value: float) -> str:
    """A p-value as the report writes it: three decimals, and "< 0.001" rather than a p of zero."""
    return "< 0.001" if p_value < 0.0005 else f"= {p_value:.3f}"
