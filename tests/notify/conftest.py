"""Fixtures for the notification tests: a real HTTP server on 127.0.0.1 and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer

from tests.notify.notify_samples import FakeTime


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def _start() -> HTTPServer:
    # Threaded, so a handler that sleeps does not hold up the next request.
    httpserver = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    httpserver.start()
    return httpserver


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[HTTPServer]:
    httpserver = _start()
    yield httpserver
    httpserver.stop()


@pytest.fixture
def server(_shared_server: HTTPServer) -> Iterator[HTTPServer]:
    """A real HTTP server on 127.0.0.1 with no handlers and an empty log."""
    _shared_server.clear()
    yield _shared_server
    _shared_server.clear()


@pytest.fixture
def own_server() -> Iterator[HTTPServer]:
    """A server of the test's own, for handlers that outlive the test (slow answers)."""
    httpserver = _start()
    yield httpserver
    httpserver.stop()
