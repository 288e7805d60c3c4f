"""What only real Elasticsearch can check, covered by the CONTRACT EMULATOR (tests/emulators/
es_contract_emulator.py): the ES 9 client's compatible-with content types, the product header, and
Elasticsearch's point-in-time endpoints (open ``POST /{index}/_pit``, close ``DELETE /_pit``)."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("elasticsearch", reason="elasticsearch (prod extra) is not installed")

from flywheel.config import ElasticsearchConfig
from flywheel.logstore.elasticsearch import ElasticsearchLogStore, LogStoreError
from tests.emulators.es_contract_emulator import ContractViolation, check_search_body


def _cfg(url: str, flavor: str = "elasticsearch", **extra) -> ElasticsearchConfig:
    return ElasticsearchConfig(hosts=[url], flavor=flavor, index=f"logs-{uuid.uuid4().hex[:10]}", max_retries=0,
                               **extra)


def _rec(ts: float, n: int) -> dict:
    return {"timestamp": ts, "workload_id": "w", "client_id": "c", "request": {"n": n}, "response": {"n": n}}


def test_elasticsearch_flavor_uses_es_pit_endpoints_and_closes_every_pit(es_contract):
    cfg = _cfg(es_contract.url, page_size=2)
    before = len(es_contract.calls)
    with ElasticsearchLogStore(cfg) as store:
        store.add([_rec(100 + n, n) for n in range(5)])
        assert [r["request"]["n"] for r in store.extract("w", "c")] == [4, 3, 2, 1, 0]
        stream = store.extract("w", "c")
        next(stream)
        stream.close()  # stopping early still closes the point in time
    calls = es_contract.calls[before:]
    assert calls.count(("POST", f"/{cfg.index}/_pit")) == 2
    assert calls.count(("DELETE", "/_pit")) == 2
    assert ("POST", "/_search") in calls and ("PUT", f"/_index_template/flywheel-logs-{cfg.index}") in calls
    assert not es_contract.open_pits
    assert es_contract.violations == []


def test_the_emulator_refuses_the_opensearch_dialect(es_contract):
    before = len(es_contract.violations)
    with pytest.raises(LogStoreError):
        ElasticsearchLogStore(_cfg(es_contract.url, flavor="opensearch"))
    assert "406" in es_contract.violations[before]
    del es_contract.violations[before:]


def test_opensearch_refuses_the_elasticsearch_dialect(opensearch_url):
    """Why ``flavor`` exists: the ES 9 client's typed API does not work against OpenSearch."""
    with pytest.raises(LogStoreError):
        ElasticsearchLogStore(_cfg(opensearch_url, flavor="elasticsearch"))


@pytest.mark.parametrize("body,needle", [
    ({"pit": {"pit_id": "x"}}, "pit must be"),
    ({"pit": {"id": "x"}, "sort": [{"timestamp": {"order": "down"}}]}, "order='down'"),
    ({"pit": {"id": "x"}, "sort": [{"timestamp": {"direction": "desc"}}]}, "unknown keys"),
    ({"pit": {"id": "x"}, "query": {"no_such_query": {}}}, "does not exist"),
    ({"pit": {"id": "x"}, "sized": 3}, "unknown keys"),
])
def test_the_emulator_validates_search_bodies_with_the_clients_types(body, needle):
    with pytest.raises(ContractViolation, match=needle):
        check_search_body(body)
