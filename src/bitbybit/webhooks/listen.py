"""``bitbybit listen``: a local receiver that verifies every delivery and prints it.

Standard library HTTP server; printing uses ``rich`` when it is installed. Each delivery is
verified with this package's own ``Verifier``: verified ones are answered 200 and printed, others
answered 400 with the reason (and the reason printed). Repeated webhook ids are marked.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from bitbybit.webhooks.errors import WebhookVerificationError
from bitbybit.webhooks.idempotency import MemoryStore
from bitbybit.webhooks.verification import DEFAULT_TOLERANCE, Event, Verifier

MAX_BODY = 1024 * 1024

Printer = Callable[[Event | None, str | None, bool], None]
"""Called with (event, None, duplicate) for a verified delivery, (None, reason, False) otherwise."""


def plain_printer(out: TextIO) -> Printer:
    lock = threading.Lock()

    def show(event: Event | None, reason: str | None, duplicate: bool) -> None:
        with lock:
            if event is None:
                print(f"✗ rejected: {reason}", file=out, flush=True)
                return
            mark = " (duplicate)" if duplicate else ""
            stamp = event.timestamp.isoformat()
            print(f"✓ {event.type} {event.id} at {stamp}{mark}", file=out)
            print(json.dumps(event.payload, indent=2, ensure_ascii=False), file=out, flush=True)

    return show


def rich_printer() -> Printer:
    try:
        from rich.console import Console
        from rich.json import JSON
        from rich.panel import Panel
    except ImportError:  # the receiver library works without rich
        return plain_printer(sys.stdout)
    console = Console()
    lock = threading.Lock()

    def show(event: Event | None, reason: str | None, duplicate: bool) -> None:
        with lock:
            if event is None:
                console.print(f"[bold red]✗ rejected[/]: {reason}")
                return
            mark = " [yellow](duplicate)[/]" if duplicate else ""
            title = f"[bold green]✓ {event.type}[/] {event.id}{mark}"
            body = JSON(json.dumps(event.payload, ensure_ascii=False))
            console.print(Panel(body, title=title, subtitle=event.timestamp.isoformat()))

    return show


def make_server(
    host: str,
    port: int,
    secrets: Sequence[str],
    show: Printer,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ThreadingHTTPServer:
    verifier = Verifier(list(secrets), tolerance)
    seen = MemoryStore()

    class Handler(BaseHTTPRequestHandler):
        server_version = "bitbybit-listen"
        sys_version = ""

        def do_POST(self) -> None:  # the name http.server dispatches to
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > MAX_BODY:
                self._answer(400, {"error": {"code": "BAD_REQUEST", "message": "bad length"}})
                return
            body = self.rfile.read(int(length))
            try:
                event = verifier.verify(body, self.headers)
            except WebhookVerificationError as error:
                show(None, str(error), False)
                self._answer(400, {"error": {"code": error.code, "message": str(error)}})
                return
            duplicate = seen.seen_or_mark(event.id)
            show(event, None, duplicate)
            self._answer(200, {"received": True, "duplicate": duplicate})

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # stdlib's name
            return  # the printer reports every delivery; no access log

    return ThreadingHTTPServer((host, port), Handler)
