"""training/tf_order.py: run_classifier.py's repeat-then-shuffle(100) batch order."""

import numpy as np
import pytest

from glue_bench.training.tf_order import buffered_order


def test_a_buffer_of_one_is_the_file_order_repeated():
    assert buffered_order(5, 3, 3, seed=0, buffer=1).tolist() == [[0, 1, 2], [3, 4, 0], [1, 2, 3]]


def test_each_row_leaves_the_buffer_once_and_not_before_it_entered():
    rows, buffer = 100_000, 100  # no wrap-around: the stream position is the row
    order = buffered_order(rows, 32, 625, seed=3, buffer=buffer).ravel()
    assert len(np.unique(order)) == len(order)  # no row twice
    position = np.arange(len(order))
    assert (order <= position + buffer - 1).all()  # row s enters after output s - buffer
    # Uniform draws from a full buffer: a row waits a geometric time with p = 1/buffer, so it leaves
    # on average at its own place, with sd sqrt(1 - p) / p = 99.5 rows.
    shift = position - order
    assert abs(shift.mean()) < 5 and 95 < shift.std() < 104
    # The first 19,900 outputs hold all of the first 19,800 rows but a few: they blend with the next ones.
    assert np.isin(np.arange(19_800), order[:19_900]).mean() > 0.99


def test_epochs_blend_and_the_seed_fixes_the_order():
    order = buffered_order(200, 10, 60, seed=1)  # three passes over 200 rows
    assert buffered_order(200, 10, 60, seed=1).tolist() == order.tolist()
    assert buffered_order(200, 10, 60, seed=2).tolist() != order.tolist()
    first_pass = order.ravel()[:200]
    assert len(np.unique(first_pass)) < 200  # some rows twice in one pass's worth of batches, others not yet
    assert np.bincount(order.ravel(), minlength=200).max() <= 5


def test_refuses_an_empty_file():
    with pytest.raises(ValueError, match="rows"):
        buffered_order(0, 32, 10, seed=0)
