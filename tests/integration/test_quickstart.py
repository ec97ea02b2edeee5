"""``docs/quickstart.md`` runs as written: the doc is the test's script, so the doc cannot rot.

Every code block marked ``<!-- quickstart: STEP -->`` is typed, in order, into one bash session
in a fresh directory, with this checkout's ``.venv/bin`` first on ``PATH`` (what the doc's
``source .venv/bin/activate`` does) and no ``BITBYBIT_*`` variable set. Background jobs
(``serve &``, ``listen &``) run in that shell as they do in the reader's terminal. After each step
the blocks marked ``<!-- quickstart-output: STEP -->`` must appear in what the terminal printed
since the step began (a reader waits for them too before typing on). In an output block ``…``
stands for any text, ids, secrets and times match any of their kind, whitespace and ``─`` runs
any width, and an id shown twice must be the same id both times.

The doc's ports (8000 for ``serve``, 8765 for ``listen``) are used when free; when one is taken
the test does what the doc tells a reader to do: set ``BITBYBIT_PORT``/``BITBYBIT_LISTEN_PORT``
to a free port and use it in the URLs.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "quickstart.md"
BIN = Path(sys.executable).parent
"""This checkout's virtual environment (the tests run with its python)."""
SERVE_PORT, LISTEN_PORT = 8000, 8765

STEP_WITHIN = 60.0
"""Seconds one step may take to finish (a hung command fails the test, it does not hang it)."""
OUTPUT_WITHIN = 30.0
"""Seconds the output a step causes may take to appear after the step (deliveries are async)."""

MARKER = re.compile(
    r"<!-- (?P<kind>quickstart|quickstart-output): (?P<name>[\w-]+) -->\n"
    r"```[\w-]*\n(?P<body>.*?)```",
    re.DOTALL,
)
TOKEN = re.compile(
    r"(?P<id>\b(?:bbb_live|bbb_test|comp|key|we|whsec|evt|cust|dlv)_[A-Za-z0-9]+)"
    r"|(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))"
    r"|(?P<any>…)|(?P<space>\s+)|(?P<rule>─+)"
)
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"


# --- the doc ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    commands: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Quickstart:
    steps: tuple[Step, ...]
    other_outputs: Mapping[str, str]
    """Output blocks that follow no step (the refusal messages), by name."""


def read_doc(text: str) -> Quickstart:
    """The marked blocks of the quick start; a malformed marking is an error, never skipped."""
    commands: dict[str, str] = {}
    outputs: dict[str, list[str]] = {}
    for match in MARKER.finditer(text):
        name, body = match["name"], match["body"]
        if match["kind"] == "quickstart":
            assert name not in commands, f"step {name!r} is marked twice in {DOC.name}"
            commands[name] = body
        else:
            outputs.setdefault(name, []).append(body)
    marked = text.count("<!-- quickstart")
    found = len(commands) + sum(len(blocks) for blocks in outputs.values())
    assert marked == found, f"{marked - found} quickstart marker(s) not followed by a code block"
    steps = tuple(Step(name, body, tuple(outputs.pop(name, ()))) for name, body in commands.items())
    others = {name: "".join(blocks) for name, blocks in outputs.items()}
    return Quickstart(steps, others)


def on_ports(text: str, serve_port: int, listen_port: int) -> str:
    """``text`` with the doc's ports replaced, as the doc's "A port is taken" says."""
    text = text.replace(f"127.0.0.1:{SERVE_PORT}", f"127.0.0.1:{serve_port}")
    return text.replace(f"127.0.0.1:{LISTEN_PORT}", f"127.0.0.1:{listen_port}")


# --- matching printed output ------------------------------------------------------------------


def line_pattern(expected: str) -> tuple[re.Pattern[str], list[str]]:
    """A pattern for one documented line, and the documented ids its groups capture, in order."""
    parts: list[str] = []
    ids: list[str] = []
    position = 0
    for token in TOKEN.finditer(expected):
        parts.append(re.escape(expected[position : token.start()]))
        position = token.end()
        if token["id"]:
            prefix = token["id"].rsplit("_", 1)[0]
            parts.append(f"({re.escape(prefix)}_[A-Za-z0-9]+)")
            ids.append(token["id"])
        elif token["time"]:
            parts.append(TIME)
        elif token["any"]:
            parts.append(".*?")
        elif token["space"]:
            parts.append(r"\s+")
        else:
            parts.append("─+")
    parts.append(re.escape(expected[position:]))
    return re.compile("".join(parts)), ids


class Bindings:
    """Which real id each id shown in the doc turned out to be; one to one, over the whole run."""

    def __init__(self) -> None:
        self.real: dict[str, str] = {}

    def consistent(self, pairs: list[tuple[str, str]]) -> dict[str, str] | None:
        """The bindings plus ``pairs``, or ``None`` if a pair contradicts them."""
        real = dict(self.real)
        for shown, actual in pairs:
            if real.setdefault(shown, actual) != actual:
                return None
        if len(set(real.values())) != len(real):
            return None  # two ids in the doc cannot be one id in the run
        return real


def find_block(block: str, lines: list[str], bindings: Bindings) -> bool:
    """True, and the block's ids bound, if ``block``'s lines appear one after another in
    ``lines``."""
    patterns = [line_pattern(line.rstrip()) for line in block.rstrip("\n").split("\n")]
    for start in range(len(lines) - len(patterns) + 1):
        pairs: list[tuple[str, str]] = []
        for (pattern, ids), line in zip(patterns, lines[start:], strict=False):
            match = pattern.fullmatch(line.rstrip())
            if match is None:
                break
            pairs.extend(zip(ids, match.groups(), strict=True))
        else:
            real = bindings.consistent(pairs)
            if real is not None:
                bindings.real = real
                return True
    return False


# --- the terminal -----------------------------------------------------------------------------


class Terminal:
    """One bash session fed a step at a time, as a reader types them; everything it and its
    background jobs print (stdout and stderr) is kept, line by line."""

    def __init__(self, cwd: Path, env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: the background jobs end with it
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.steps = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def type(self, commands: str) -> tuple[int, int]:
        """Run ``commands``; returns where its output starts in ``lines`` and the exit status
        of its last command."""
        self.steps += 1
        done = f"<<quickstart step {self.steps} done"
        start = len(self.lines)
        assert self.process.stdin is not None
        # the newline first: a command's output need not end with one (curl's does not)
        self.process.stdin.write(f"{commands}\nprintf '\\n%s %s>>\\n' '{done}' \"$?\"\n")
        self.process.stdin.flush()
        line = self.wait_for(lambda line: line.startswith(done), start, STEP_WITHIN)
        return start, int(line.removeprefix(done).strip(" >"))

    def wait_for(self, test: Callable[[str], bool], start: int, within: float) -> str:
        """The first line since ``start`` that passes ``test``, waiting up to ``within`` s."""
        deadline = time.monotonic() + within
        seen = start
        with self.changed:
            while True:
                for line in self.lines[seen:]:
                    if test(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self.changed.wait(left):
                    raise AssertionError(f"timed out; the terminal showed:\n{self.transcript()}")

    def expect(self, block: str, start: int, bindings: Bindings, within: float) -> None:
        """Wait until ``block`` appears in what was printed since ``start``."""
        deadline = time.monotonic() + within
        with self.changed:
            while not find_block(block, self.lines[start:], bindings):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"the doc's output\n{block}\nnever appeared; the terminal showed:\n"
                        f"{self.transcript(start)}"
                    )
                self.changed.wait(left)

    def transcript(self, start: int = 0) -> str:
        return "\n".join(self.lines[start:])

    def close(self) -> None:
        """End bash and whatever it left running (the doc's last step should have stopped it)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue


def port_is_free(port: int) -> bool:
    """True if a server could listen on ``port`` (like uvicorn and ``listen``, with
    ``SO_REUSEADDR``: connections closed a moment ago do not make a port taken)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def is_listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def newcomer_env(**extra: str) -> dict[str, str]:
    """This environment without any ``BITBYBIT_*`` setting, ``bitbybit`` first on ``PATH``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("BITBYBIT_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "80"  # the width of the doc's panels (any width matches, but wraps differ)
    return {**env, **extra}


@pytest.fixture
def quickstart() -> Quickstart:
    assert (BIN / "bitbybit").exists(), f"no bitbybit in {BIN}: install the project (make test)"
    return read_doc(DOC.read_text(encoding="utf-8"))


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[tuple[Terminal, int, int]]:
    serve_port = SERVE_PORT if port_is_free(SERVE_PORT) else free_port()
    listen_port = LISTEN_PORT if port_is_free(LISTEN_PORT) else free_port()
    ports: dict[str, str] = {}
    if serve_port != SERVE_PORT:
        ports["BITBYBIT_PORT"] = str(serve_port)
    if listen_port != LISTEN_PORT:
        ports["BITBYBIT_LISTEN_PORT"] = str(listen_port)
    shell = Terminal(tmp_path, newcomer_env(**ports))
    try:
        yield shell, serve_port, listen_port
    finally:
        shell.close()


def assert_triggered_event_arrives(shell: Terminal, start: int) -> None:
    """Whatever the doc shows: the event ``trigger`` printed reaches ``listen``, verified."""
    event_id = shell.wait_for(lambda line: line.startswith("evt_"), start, 1).strip()
    shell.wait_for(lambda line: f"✓ customer.created {event_id}" in line, start, OUTPUT_WITHIN)


def assert_created_customer_arrives(shell: Terminal, start: int) -> None:
    """Whatever the doc shows: the customer the API created reaches ``listen`` in a verified
    event (``listen`` prints only verified events in a panel)."""
    created = shell.wait_for(lambda line: '"id": "cust_' in line and "│" not in line, start, 1)
    customer_id = created.split('"')[3]
    title = shell.wait_for(lambda line: "✓ customer.created evt_" in line, start, OUTPUT_WITHIN)
    shell.wait_for(
        lambda line: f'"id": "{customer_id}"' in line and "│" in line,
        shell.lines.index(title, start),
        OUTPUT_WITHIN,
    )


# --- the tests --------------------------------------------------------------------------------


def test_the_quickstart_runs_as_written(
    quickstart: Quickstart, terminal: tuple[Terminal, int, int], tmp_path: Path
) -> None:
    shell, serve_port, listen_port = terminal
    names = [step.name for step in quickstart.steps]
    assert {"serve", "listen", "trigger", "api", "stop"} <= set(names), names
    bindings = Bindings()
    for step in quickstart.steps:
        start, status = shell.type(on_ports(step.commands, serve_port, listen_port))
        log = tmp_path / "serve.log"
        assert status == 0, (
            f"step {step.name} exited {status}:\n{shell.transcript(start)}\n"
            f"serve.log:\n{log.read_text() if log.exists() else '(none)'}"
        )
        for block in step.outputs:
            shell.expect(on_ports(block, serve_port, listen_port), start, bindings, OUTPUT_WITHIN)
        if step.name == "trigger":
            assert_triggered_event_arrives(shell, start)
        if step.name == "api":
            assert_created_customer_arrives(shell, start)
    for port in (serve_port, listen_port):  # the doc's last step stopped serve and listen
        deadline = time.monotonic() + 20
        while is_listening(port):
            assert time.monotonic() < deadline, f"port {port} still answers after the last step"
            time.sleep(0.1)
    printed = shell.transcript()
    assert "✗ rejected" not in printed, printed
    assert not re.search(r"^error:|Traceback", printed, re.MULTILINE), printed


def endpoint_url(quickstart: Quickstart) -> str:
    """The URL the doc registers for ``bitbybit listen``."""
    (step,) = [step for step in quickstart.steps if "endpoints create" in step.commands]
    found = re.search(r"--url (\S+)", step.commands)
    assert found is not None, step.commands
    return found[1]


def test_refusals_name_the_setting_that_allows_the_url(
    quickstart: Quickstart, tmp_path: Path
) -> None:
    """Without the doc's step 1, registering the receiver fails with the documented one-line
    message naming the setting; with only the first setting, naming the second."""

    def bitbybit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "bitbybit"), *args],
            cwd=tmp_path,
            env=newcomer_env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert bitbybit("migrate").returncode == 0  # the database serve would have made
    made = bitbybit("companies", "create", "Acme")
    assert made.returncode == 0, made.stderr
    company = made.stdout.strip()
    register = ("endpoints", "create", "--company", company, "--url", endpoint_url(quickstart))
    allow_http = {"BITBYBIT_ALLOW_HTTP_TARGETS": "1"}
    cases = [
        ({}, "refused-http", "BITBYBIT_ALLOW_HTTP_TARGETS=1"),
        (allow_http, "refused-private", "BITBYBIT_ALLOW_PRIVATE_TARGETS=1"),
    ]
    for env, documented, setting in cases:
        assert documented in quickstart.other_outputs, f"the doc shows no {documented!r} output"
        refused = bitbybit(*register, **env)
        assert refused.returncode == 1, refused
        assert refused.stdout == ""
        assert refused.stderr.count("\n") == 1, refused.stderr  # one line, no traceback
        assert setting in refused.stderr
        assert find_block(
            quickstart.other_outputs[documented], [refused.stderr.rstrip("\n")], Bindings()
        ), f"printed {refused.stderr!r}, the doc shows {quickstart.other_outputs[documented]!r}"
    listed = bitbybit("endpoints", "list", "--company", company)
    assert (listed.returncode, listed.stdout) == (0, "")  # nothing was registered
