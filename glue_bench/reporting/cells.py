"""How a number is written in a report cell: points with one decimal, signed differences, learning rates."""

from __future__ import annotations

import numpy as np

MISSING = "—"
DEGENERATE = "†"


def points(value: float) -> str:
    """A fraction as points, one decimal as the paper prints them (0.8421 → 84.2)."""
    return f"{100 * value:.1f}"


def signed(value: float) -> str:
    """A difference in points; a rounded zero is +0.0, never -0.0."""
    return f"{value:+.1f}" if abs(value) >= 0.05 else "+0.0"


def lr_text(value: float) -> str:
    """A learning rate in the shortest scientific form: 1e-4, 3e-5."""
    return np.format_float_scientific(value, trim="-", exp_digits=1)
