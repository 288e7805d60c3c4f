"""`connect_kwargs` against a REAL Temporal dev server behind a mutual-TLS terminating proxy.

The dev server speaks plain gRPC only, so the test puts a TLS proxy in front of it (server certificate
signed by a throwaway CA made with the openssl CLI, client certificate REQUIRED). A client built from the
flywheel's `temporal.tls` config connects through it and the server answers its health check; the
proxy saw the configured client certificate. Without the client certificate the handshake is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import ListNamespacesRequest
from temporalio.client import Client

from flywheel.config import TemporalConfig
from starter.stack import TemporalDevServer
from workers.temporal_auth import connect_kwargs

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the openssl CLI is needed to make test certificates")

SERVER_NAME = "temporal.test"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=flywheel-test-ca", cwd=d)
    for name, cn, ext in (("server", SERVER_NAME, f"subjectAltName=DNS:{SERVER_NAME}\nextendedKeyUsage=serverAuth"),
                          ("client", "flywheel-worker", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d)


@contextlib.asynccontextmanager
async def mtls_proxy(pki: Path, upstream_port: int) -> AsyncIterator[tuple[int, list[str]]]:
    """TLS (client cert required, ALPN h2) on a free port → plain TCP to the dev server. Yields (port, peer CNs)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    peers: list[str] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("peercert") or {}
        peers.extend(v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName")
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], peers
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


@pytest.fixture(scope="module")
def dev_server() -> AsyncIterator[TemporalDevServer]:
    server = TemporalDevServer(ui=False).start()
    try:
        server.wait_ready(timeout=60)
        yield server
    finally:
        server.stop()


async def test_mutual_tls_from_config_reaches_temporal(dev_server: TemporalDevServer, tmp_path: Path) -> None:
    make_pki(tmp_path)
    async with mtls_proxy(tmp_path, dev_server.grpc_port) as (port, peers):
        temporal = TemporalConfig(address=f"127.0.0.1:{port}", tls={
            "server_ca_path": str(tmp_path / "ca.pem"), "client_cert_path": str(tmp_path / "client.pem"),
            "client_key_path": str(tmp_path / "client.key"), "server_name": SERVER_NAME})
        client = await Client.connect(**connect_kwargs(temporal, environ={}))
        assert await client.service_client.check_health()
        namespaces = await client.workflow_service.list_namespaces(ListNamespacesRequest())
        assert "default" in {n.namespace_info.name for n in namespaces.namespaces}
        assert "flywheel-worker" in peers


async def test_without_the_client_certificate_the_handshake_is_refused(dev_server: TemporalDevServer,
                                                                        tmp_path: Path) -> None:
    make_pki(tmp_path)
    async with mtls_proxy(tmp_path, dev_server.grpc_port) as (port, peers):
        temporal = TemporalConfig(address=f"127.0.0.1:{port}", tls={
            "server_ca_path": str(tmp_path / "ca.pem"), "server_name": SERVER_NAME})
        with pytest.raises(RuntimeError):
            await Client.connect(**connect_kwargs(temporal, environ={}), connect_timeout=timedelta(seconds=3))
        assert peers == []
