"""SIGTERM does what Ctrl-C does (glue_bench/sweeping/stops.py), in this process: the stop is raised where the
code runs, a duplicate is ignored while the first is handled, a trial's recording is never cut in half, and a
stop that Python loses in a garbage-collector callback is raised again."""

from __future__ import annotations

import os
import signal
import time
import weakref

import pytest

from glue_bench.sweeping import stops


def spin(seconds: float) -> None:
    """Run Python code for a while (a signal's handler runs between bytecodes)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_sigterm_raises_systemexit_143_and_ctrl_c_keyboardinterrupt():
    with pytest.raises(SystemExit) as stop, stops.handled():
        os.kill(os.getpid(), signal.SIGTERM)
        spin(1)
    assert stop.value.code == 143
    with pytest.raises(KeyboardInterrupt), stops.handled():
        os.kill(os.getpid(), signal.SIGINT)
        spin(1)


def test_a_second_sigterm_does_not_cut_short_the_handling_of_the_first():
    """SLURM signals every process of a job, and a launcher passes the signal on: a worker gets two."""
    handled = []
    with pytest.raises(SystemExit), stops.handled():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            spin(1)
        except SystemExit:
            stops.caught()
            os.kill(os.getpid(), signal.SIGTERM)  # the duplicate, while the trial is being recorded
            spin(0.2)
            handled.append("trial recorded")
            raise
    assert handled == ["trial recorded"]


def test_a_stop_waits_for_the_end_of_a_deferred_block():
    inside, after = [], []
    with pytest.raises(SystemExit), stops.handled():
        with stops.deferred():  # a trial taken and held, or its state written
            os.kill(os.getpid(), signal.SIGTERM)
            spin(0.2)
            inside.append("done")
        after.append("not reached")
    assert (inside, after) == (["done"], [])


def test_a_stop_lost_in_a_garbage_collector_callback_is_raised_again(capsys):
    """A signal's handler that runs inside a weakref callback raises where Python cannot raise ("Exception
    ignored in ..."): the stop is raised again once the callback has returned, and nothing is printed."""

    class Model:
        pass

    def callback(_ref):
        os.kill(os.getpid(), signal.SIGTERM)
        spin(0.05)  # the handler runs here, and its SystemExit is lost

    started = time.monotonic()
    with pytest.raises(SystemExit) as stop, stops.handled():
        model = Model()
        ref = weakref.ref(model, callback)
        del model
        assert ref() is None  # the callback ran
        spin(1.5)  # the stop is raised again here, before RERAISE_SECONDS
    assert stop.value.code == 143 and time.monotonic() - started < stops.RERAISE_SECONDS
    assert capsys.readouterr().err == ""


def test_the_handlers_before_are_put_back():
    before = signal.getsignal(signal.SIGTERM)
    with stops.handled():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_handled_in_one_block_is_never_raised_again_in_the_next():
    """A stop's re-raise, pending when its block ends, never reaches a later block of the same process (one
    command after another in a test process or a notebook): before, the later block got SystemExit(143)."""
    with pytest.raises(SystemExit), stops.handled():
        os.kill(os.getpid(), signal.SIGTERM)
        spin(1)
    with stops.handled():  # no signal here: nothing may stop it
        spin(stops.RERAISE_SECONDS + 1)
