"""Stops: SIGTERM (SLURM preemption and time limits, scancel, Kubernetes) does what Ctrl-C does.

A worker or launcher that gets SIGINT or SIGTERM stops at once: SIGINT raises KeyboardInterrupt, SIGTERM
SystemExit(143) (the exit code of a process ended by SIGTERM), so the code that records a trial as
interrupted runs either way. A second stop signal is ignored while stopping: SLURM signals every process of a
job and a launcher passes the signal on to its workers, so a worker often gets two; the second must not cut
short the recording of the first. `deferred()` holds a stop back while a trial's state is being written, so
that a trial is never left taken but unrecorded.

An exception raised by a signal handler is lost where Python cannot raise it (a weakref callback or a
finalizer that the garbage collector runs: "Exception ignored in ...", common in a worker). So a stop that
Python reports lost is raised again as soon as that callback returns, and any stop every RERAISE_SECONDS
until the code that handles it says it has it (`caught()`), its `handled()` block ends, or the process ends.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from contextlib import contextmanager

SIGTERM_EXIT = 128 + signal.SIGTERM  # 143: what a shell and SLURM report for a process ended by SIGTERM
RERAISE_SECONDS = 2.0

# reraise: the handled() block whose stop a _reraise thread is raising again, or None
_state = {"stopping": None, "caught": False, "reraise": None, "deferring": 0, "pending": None, "block": 0}


@contextmanager
def handled(signals=(signal.SIGINT, signal.SIGTERM)):
    """Stop on these signals as described above while the block runs (the handlers before are put back
    after it). Only the main thread can set signal handlers: elsewhere the block runs with those it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before, hook = {number: signal.getsignal(number) for number in signals}, sys.unraisablehook
    _state.update(stopping=None, caught=False, reraise=None, deferring=0, pending=None)
    for number in signals:
        signal.signal(number, _on_signal)

    def unraisable(info) -> None:
        if _state["stopping"] and not _state["caught"] and isinstance(info.exc_value, (SystemExit, KeyboardInterrupt)):
            # Lost in a callback: raised again once it has returned (from another thread: here it would be lost too)
            threading.Thread(target=_reraise, args=(_state["stopping"], 0.05, _state["block"]), daemon=True).start()
        else:
            hook(info)

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        caught()
        _state["block"] += 1  # ended: a re-raise still pending (its thread asleep) never reaches the next block
        sys.unraisablehook = hook
        for number, handler in before.items():
            signal.signal(number, handler)


def _on_signal(number, _frame) -> None:
    reraise, _state["reraise"] = _state["reraise"], None
    if reraise is not None and reraise != _state["block"]:
        return  # an earlier block's stop, raised again just as that block ended
    if _state["stopping"] is not None and (_state["caught"] or reraise is None):
        return  # a second stop signal: the first is being handled
    if _state["deferring"]:
        _state["pending"] = number
        return
    _stop(number)


def _stop(number) -> None:
    if _state["stopping"] is None:
        _state["stopping"] = number
        threading.Thread(target=_reraise, args=(number, RERAISE_SECONDS, _state["block"], True), daemon=True).start()
    if number == signal.SIGTERM:
        raise SystemExit(SIGTERM_EXIT)
    raise KeyboardInterrupt


def _reraise(number, after: float, block: int, again: bool = False) -> None:
    """Raise the stop in the main thread again after `after` seconds (and every `after` seconds, `again`),
    unless it has been caught or its `handled()` block has ended."""
    while True:
        time.sleep(after)
        if _state["caught"] or _state["block"] != block:
            return
        _state["reraise"] = block
        _thread.interrupt_main(number)  # runs _on_signal in the main thread, as the signal did
        if not again:
            return


def caught() -> None:
    """The stop has reached the code that handles it: it is not raised again (see the module doc)."""
    _state["caught"] = True


@contextmanager
def deferred():
    """A stop signal that arrives inside the block takes effect when the block ends."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
        if not _state["deferring"] and _state["pending"] is not None:
            number, _state["pending"] = _state["pending"], None
            _stop(number)
