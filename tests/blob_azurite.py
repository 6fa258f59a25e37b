"""A real Blob service (Azurite's blob server, pinned in package.json) for the dead-letter tests.

detection.devserver runs Azurite's Table service; dead letters live in Blob Storage, which is a
separate Azurite program. Same account, same published development key, loopback only.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from detection.devserver import ACCOUNT, ACCOUNT_KEY, HOST, REPO_ROOT, free_port

AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"


def blob_connection_string(port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{HOST}:{port}/{ACCOUNT};")


@pytest.fixture(scope="session")
def blob_azurite() -> Iterator[str]:
    """The connection string of a Blob service that lives for the test session."""
    if not AZURITE_BLOB.exists():
        pytest.skip("azurite-blob not found: run `npm ci` in the project folder")
    port = free_port()
    args = [str(AZURITE_BLOB), "--disableTelemetry", "--skipApiVersionCheck", "--silent",
            "--inMemoryPersistence", "--blobHost", HOST, "--blobPort", str(port)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"azurite-blob exited at start-up (code {process.returncode})")
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("azurite-blob did not start within 60 s")
                time.sleep(0.05)
        yield blob_connection_string(port)
    finally:
        process.terminate()
        process.wait(20)
