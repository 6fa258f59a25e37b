"""A local Table service (Azurite) for the test suite and the demo: one piece of code starts it for both.

Azurite is the real Table service protocol running locally (npm `azurite`, pinned in package.json), so the
state layer is exercised against the same HTTP API, ETags, transactions and error codes it meets in Azure
rather than against an imitation of them. It listens on loopback only.

    python -m detection.devserver -- python -m detection replay samples/
        starts Azurite in memory, runs the command with ALERTS_STORAGE_CONNECTION pointing at it, stops it.
    python -m detection.devserver
        starts it and prints the connection setting until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_TABLE = REPO_ROOT / "node_modules" / ".bin" / "azurite-table"
HOST = "127.0.0.1"
# Azurite's fixed development account. The key is the emulator's published, well-known development key
# (the same one in every Azurite and Storage Emulator install), not a credential of any real account.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not start; the message says why."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def connection_string(port: int, host: str = HOST) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint=http://{host}:{port}/{ACCOUNT};")


def azurite_command() -> list[str]:
    """How to run azurite-table here: the project's pinned copy, else one on PATH."""
    if AZURITE_TABLE.exists():
        return [str(AZURITE_TABLE)]
    found = shutil.which("azurite-table")
    if found:
        return [found]
    raise AzuriteError("azurite-table not found: run `npm ci` in the project folder")


class Azurite:
    """One Azurite Table service process on loopback.

    In memory by default. With `location` it keeps its data in that folder, so `stop()` and `start()`
    model an outage after which the service comes back with its data, as Table Storage does. `stop()`
    interrupts it (SIGINT) so it writes its data before exiting.
    """

    def __init__(self, *, port: int | None = None, location: Path | None = None, host: str = HOST) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.location = location
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port, self.host)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> Azurite:
        if self.running:
            return self
        args = [*azurite_command(), "--disableTelemetry", "--skipApiVersionCheck", "--silent",
                "--tableHost", self.host, "--tablePort", str(self.port)]
        if self.location is None:
            args.append("--inMemoryPersistence")
            workdir = tempfile.gettempdir()
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
            workdir = str(self.location)
        log_fd, log_name = tempfile.mkstemp(prefix="azurite-", suffix=".log")
        self._log = Path(log_name)
        with os.fdopen(log_fd, "wb") as log:
            # The arguments are our own: the pinned binary, flags and numbers.
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                            stdin=subprocess.DEVNULL, cwd=workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self._log.read_text(errors="replace")[-2000:]
                self.process = None
                raise AzuriteError(f"azurite-table exited at start-up on port {self.port}: {output.strip()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AzuriteError(
            f"azurite-table did not accept connections on port {self.port} within {timeout:.0f}s")

    def stop(self, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.unlink()
            self._log = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_azurite(*, port: int | None = None, location: Path | None = None) -> Azurite:
    """Start Azurite on a free loopback port (or `port`) and return it once it accepts connections."""
    return Azurite(port=port, location=location).start()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM (kill, a supervisor) and SIGINT into an orderly exit, so `main` stops Azurite
    instead of leaving it running on its port. SIGINT is set explicitly because a shell starts
    background jobs with it ignored. The previous handlers come back afterwards."""
    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; its own stay in force
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in (
        (signal.SIGTERM, leave), (signal.SIGINT, signal.default_int_handler))}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detection.devserver",
        description="Run a local Table service (Azurite, in memory unless --location is given). With a "
                    "command after --, run it with ALERTS_STORAGE_CONNECTION set, then stop Azurite.")
    parser.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    parser.add_argument("--location", type=Path, help="keep data in this folder instead of memory")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with _stop_on_signals():
        try:
            server = start_azurite(port=args.port, location=args.location)
        except AzuriteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            if command:
                env = dict(os.environ, ALERTS_STORAGE_CONNECTION=server.connection_string)
                return subprocess.call(command, env=env)  # noqa: S603 - the user's own command line
            # Ctrl-C is how this mode ends; it may come as soon as the connection line is out.
            with contextlib.suppress(KeyboardInterrupt):
                print(f"Azurite Table service on http://{server.host}:{server.port} (Ctrl-C to stop)",
                      file=sys.stderr)
                print(f"ALERTS_STORAGE_CONNECTION={server.connection_string}", flush=True)
                assert server.process is not None
                server.process.wait()
            return 0
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
