"""How a process stops: the first SIGINT or SIGTERM stops it gracefully, a second one at once.

A graceful stop lets in-flight delivery attempts finish and records their results; an operator who
cannot wait for that sends the signal again, and the process exits there and then. Nothing is lost
either way: what it had leased and not recorded is claimed again when the leases run out.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import structlog

log = structlog.get_logger("bitbybit.process")


class GracefulStop:
    """A signal handler: the first call runs ``on_stop``, the next exits the process at once."""

    def __init__(self, on_stop: Callable[[], None]) -> None:
        self.on_stop = on_stop
        self.requested = False

    def __call__(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            log.warning("stopped_at_once", signal=name)
            os._exit(128 + signum)  # the shell's convention for "ended by this signal"
        self.requested = True
        log.info(
            "stopping", signal=name, hint="in-flight attempts finish; signal again to exit now"
        )
        self.on_stop()
