"""Real servers for the store tests, reusable from any test folder (and the bench).

* MongoDB wire protocol: SecantusDB (GPL, a test/dev dependency only; never imported by ``flywheel``).
* OpenSearch HTTP API: osmem-server (in-memory OpenSearch-compatible binary shipped in a wheel).
* S3 API: moto's threaded server.

Each ``*_server`` context manager yields the address to connect to and stops the server on exit.
``require(module, what)`` skips a test with a message naming the missing package.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` or skip, saying which test server is absent and why."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{what} is not installed ({exc}); install the dev extra")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def secantus_server(storage_path: Path) -> Iterator[str]:
    """A SecantusDB server on a free port; yields its ``mongodb://`` URI."""
    from secantus import SecantusDBServer

    with SecantusDBServer(storage_path=str(storage_path)) as server:
        yield server.uri


@contextlib.contextmanager
def osmem_server() -> Iterator[str]:
    """An osmem (OpenSearch-compatible) server; yields its ``http://`` base URL."""
    from osmem_server import OsmemServer

    server = OsmemServer.start(japanese=False)
    try:
        yield server.url
    finally:
        server.close()


@contextlib.contextmanager
def moto_s3_server() -> Iterator[str]:
    """moto's S3 API over HTTP on a free loopback port; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
