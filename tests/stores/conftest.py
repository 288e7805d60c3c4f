"""Session-wide real store servers (see tests/helpers/store_servers.py). Other test folders can import
the helpers directly or copy these three fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.store_servers import moto_s3_server, osmem_server, require, secantus_server


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require("secantus", "SecantusDB (MongoDB wire-protocol test server)")
    require("pymongo", "pymongo (prod extra)")
    with secantus_server(tmp_path_factory.mktemp("secantus")) as uri:
        yield uri


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    require("osmem_server", "osmem-server (OpenSearch-compatible test server)")
    require("elasticsearch", "elasticsearch (prod extra)")
    with osmem_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    require("moto.server", "moto[server] (S3 API test server)")
    with moto_s3_server() as url:
        yield url


@pytest.fixture(scope="session")
def es_contract(opensearch_url: str):
    """The Elasticsearch-dialect contract emulator (tests/emulators/es_contract_emulator.py) over osmem."""
    from tests.emulators.es_contract_emulator import EsContractEmulator
    from tests.emulators.threaded_server import ThreadedServer
    from tests.helpers.store_servers import free_port

    emulator = EsContractEmulator(opensearch_url)
    server = ThreadedServer(emulator.app, free_port(), "es-contract-emulator")
    server.start_server()
    emulator.url = f"http://127.0.0.1:{server.port}"
    try:
        yield emulator
    finally:
        server.stop()


@pytest.fixture
def es_contract_url(es_contract) -> str:
    return es_contract.url
