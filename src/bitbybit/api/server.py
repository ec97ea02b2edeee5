"""The HTTP server of ``bitbybit serve``: uvicorn, with bitbybit's way of stopping.

uvicorn's own handling of SIGTERM stops the application and then re-raises the signal, so the
process ends "killed by SIGTERM" however cleanly it stopped, and a second SIGTERM is ignored.
Here the first SIGINT or SIGTERM also tells the in-process delivery worker to stop claiming at
once (not only after the last HTTP connection has closed), the process exits 0 once everything
in flight is finished and recorded, and a second signal exits at once.
"""

from __future__ import annotations

from types import FrameType

import uvicorn

from bitbybit.logs import adopt_library_loggers
from bitbybit.stopping import GracefulStop


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        adopt_library_loggers()  # uvicorn's lines in bitbybit's format, not its plain text
        self.stopper = GracefulStop(self._stop)

    def _stop(self) -> None:
        self.should_exit = True
        state = getattr(self.config.app, "state", None)
        stop_worker = getattr(state, "stop_worker", None)
        if stop_worker is not None:
            stop_worker()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopper(sig)
