"""The local Table service starter shared by the test suite and the demo."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from detection.devserver import Azurite, main
from detection.settings import Settings
from detection.state.store import GROUPS, AlertStore

pytestmark = pytest.mark.integration


def test_runs_a_command_against_a_fresh_azurite_and_stops_it(capfd: pytest.CaptureFixture[str]) -> None:
    check = ("import os, sys; from detection.settings import Settings; from detection.state.store import "
             "AlertStore; s = AlertStore.open(Settings.from_env(os.environ)); "
             "print(s.tables.description); sys.exit(7)")
    assert main(["--", sys.executable, "-c", check]) == 7  # the command's own exit status
    out = capfd.readouterr().out
    assert "127.0.0.1:" in out and "connection string from ALERTS_STORAGE_CONNECTION" in out
    port = int(out.split("127.0.0.1:")[1].split()[0])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # stopped afterwards


def test_a_disk_backed_instance_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    server = Azurite(location=tmp_path / "data")
    with server:
        env = {"ALERTS_STORAGE_CONNECTION": server.connection_string}
        AlertStore.open(Settings.from_env(env)).tables.create(GROUPS, {"PartitionKey": "p", "RowKey": "r"})
        server.stop()
        assert not server.running
        server.start()
        assert AlertStore.open(Settings.from_env(env)).tables.get(GROUPS, "p", "r") is not None


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 0)])
def test_a_signal_stops_azurite_with_the_starter(sig: int, status: int) -> None:
    # Started the way a shell starts a background job: SIGINT ignored, as `&` leaves it.
    proc = subprocess.Popen([sys.executable, "-m", "detection.devserver"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        port = int(line.split("TableEndpoint=http://127.0.0.1:")[1].split("/")[0])
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == status
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass  # Azurite went with it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group, Azurite included
        proc.wait()
