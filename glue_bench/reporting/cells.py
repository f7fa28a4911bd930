"""How a number is written in a report cell: points with one decimal, signed differences, learning rates."""

from __future__ import annotations

MISSING = "—"
DEGENERATE = "†"
INCOMPLETE = "‡"


def points(value: float) -> str:
    """A fraction as points, one decimal as the paper prints them (0.8421 → 84.2)."""
    return f"{100 * value:.1f}"


def agreement(value: float, regression: bool) -> str:
    """A distilled student's agreement with its teacher on a split (training/distill.agreement) as a clause: a
    share of rows for a classifier; for a regression task a Pearson r, written as the correlation it is."""
    if regression:
        return f"the student's outputs correlate with its teacher's at Pearson r {value:.4f}"
    return f"the student agrees with its teacher on {100 * value:.2f}% of rows"


def signed(value: float) -> str:
    """A difference in points; a rounded zero is +0.0, never -0.0."""
    return f"{value:+.1f}" if abs(value) >= 0.05 else "+0.0"


def collapse_mark(config) -> str:
    """' †' for a one-seed configuration that collapsed, ' †k/n' when k of its n seeds did; '' otherwise."""
    if not config["collapsed"]:
        return ""
    return f" {DEGENERATE}" if config["seeds"] == 1 else f" {DEGENERATE}{config['collapsed']}/{config['seeds']}"


def seed_gaps(config) -> str:
    """Which seeds of a configuration did not finish: 'seed 1 failed; seed 2 missing'."""
    parts = []
    for column, word in (("failed_seeds", "failed"), ("missing_seeds", "missing")):
        seeds = config[column]
        if seeds:
            parts.append(f"seed{'s' if ',' in seeds else ''} {seeds} {word}")
    return "; ".join(parts)
