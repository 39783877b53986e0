"""Signals as a benchmark harness needs them: termination that unwinds like Ctrl-C, so every runner is stopped
on its device and every measured figure stored; and a block (a kill, a cleanup) that a second Ctrl-C cannot
cut short. Used by the transports, the pytest plugin and the CLI."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


def interrupt_on_termination() -> dict:
    """SIGTERM (a cancelled CI job) and SIGHUP (a closed terminal) end the session as Ctrl-C does: by default
    they end the process at once, with no runner killed on its device, no finish time and device folders left
    behind. As KeyboardInterrupt, the cell in flight stops its runner and is stored as failed, and
    the session's end runs (pytest_sessionfinish, the CLI's finally). A signal someone set otherwise (nohup's
    "ignore") is left alone. Returns the handlers replaced, to restore."""
    if threading.current_thread() is not threading.main_thread():  # only there can Python handle signals
        return {}
    return {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)
            if signal.getsignal(sig) == signal.SIG_DFL}


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block is done, then act on the first one: a second Ctrl-C
    must not cut short the kill of a runner, or the cleanup, that the first one started. Python runs signal
    handlers in the main thread only, so elsewhere this holds nothing (and needs not)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        if caught:
            signal.raise_signal(caught[0])  # now, with the handler it would have met
