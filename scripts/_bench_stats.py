"""Figures you can trust: every figure is measured in several rounds, the contenders of a
comparison alternating (round r starts with contender r), and shown as the median with the
spread (lowest and highest), next to the limit measured in the same rounds."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: Rounds per figure unless a script is told otherwise (`--repeats`).
DEFAULT_REPEATS = 3


@dataclass
class Figure:
    label: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def line(self, digits: int = 0) -> str:
        low, high = min(self.values), max(self.values)
        spread = 100 * (high - low) / self.median if self.median else 0.0
        return (
            f"  {self.label:38} {self.median:10.{digits}f} {self.unit:7} "
            f"[{low:.{digits}f} .. {high:.{digits}f}, spread {spread:.0f}%, n={len(self.values)}]"
        )


def alternate(contenders: dict[str, Callable[[], float]], repeats: int, unit: str) -> dict[str, Figure]:
    """Run every contender `repeats` times, rotating which goes first: no contender always
    meets a cold cache, a fresh checkpoint or a warm CPU."""
    names = list(contenders)
    figures = {name: Figure(name, unit) for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            figures[name].values.append(contenders[name]())
    return figures


def ratio_line(label: str, value: float, limit: float, target: float) -> str:
    share = value / limit
    verdict = "PASS" if share >= target else "FAIL"
    return f"  {label}: {share:.1%} (median / median; target >= {target:.0%}: {verdict})"


def paired_ratio_line(label: str, values: Sequence[float], limits: Sequence[float], target: float) -> str:
    """The ratio within each round (the two measured seconds apart), its median and spread:
    a shared machine's speed drifts from round to round, and a ratio taken within one round
    cancels that drift where a ratio of two medians does not."""
    ratios = [value / limit for value, limit in zip(values, limits, strict=True)]
    share = statistics.median(ratios)
    verdict = "PASS" if share >= target else "FAIL"
    return (
        f"  {label}, round by round: {share:.1%} [{min(ratios):.1%} .. {max(ratios):.1%}, n={len(ratios)}] "
        f"(median of the rounds' ratios; target >= {target:.0%}: {verdict})"
    )
