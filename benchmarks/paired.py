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
    seeds: int  # seeds pooled

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

    def seeds_to_decide(self, family: int = 1) -> int | None:
        """Seeds (of this test carve) that would find the measured difference with POWER at ALPHA / family
        (Bonferroni's, the strictest step of Holm's), were the difference and the share of disagreeing rows to stay
        as measured: a planning figure, not evidence. None where both got as many rows right (nothing to find)."""
        if self.method_only == self.baseline_only:
            return None
        share = (self.method_only + self.baseline_only) / self.rows
        return math.ceil(rows_to_detect(abs(self.difference), share, ALPHA / family) / (self.rows / self.seeds))


def mcnemar(method_cells: dict[int, str], baseline_cells: dict[int, str]) -> Paired | None:
    """The paired test over the seeds both have per-row results for (seed -> correct string); None if none."""
    seeds = [seed for seed in sorted(set(method_cells) & set(baseline_cells)) if len(method_cells[seed]) == len(baseline_cells[seed])]
    pairs = [(a == "1", b == "1") for seed in seeds for a, b in zip(method_cells[seed], baseline_cells[seed])]
    if not pairs:
        return None
    method_only = sum(a and not b for a, b in pairs)
    baseline_only = sum(b and not a for a, b in pairs)
    discordant = method_only + baseline_only
    p_value = exact_two_sided(min(method_only, baseline_only), discordant)
    return Paired(len(pairs), method_only, baseline_only, p_value, detectable_difference(len(pairs), discordant / len(pairs)),
                  len(seeds))


def mcnemar_against_untrained(method_cells: dict[int, str], answers: str) -> Paired | None:
    """The paired test against a run that trains nothing (the bare model): its one run's answers (`answers`, the
    per-row '1'/'0' string) are the same on every seed, so they pair with each seed of the method."""
    return mcnemar(method_cells, {seed: answers for seed in method_cells})


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
    return 100 * z_sum(ALPHA) * math.sqrt(max(discordant_share, 1 / rows) / rows)


def rows_to_detect(difference: float, discordant_share: float, alpha: float = ALPHA) -> float:
    """Pairs needed to detect `difference` points with POWER at two-sided `alpha` when this share of them
    disagree: Connor's approximation above, solved for the rows."""
    return discordant_share * (100 * z_sum(alpha) / difference) ** 2


def z_sum(alpha: float) -> float:
    """The normal quantiles a two-sided test at `alpha` and POWER add up to."""
    return NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(POWER)


def p_text(p_value: float) -> str:
    """A p-value as the report writes it: three decimals, and "< 0.001" rather than a p of zero."""
    return "< 0.001" if p_value < 0.0005 else f"= {p_value:.3f}"
