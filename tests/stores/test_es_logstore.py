"""Elasticsearch/OpenSearch log store specifics over real HTTP (osmem-server): per-document bulk errors,
the index template, existing indexes, credentials by env name, config validation."""

from __future__ import annotations

import uuid

import pytest

from flywheel.config import ConfigError, ElasticsearchConfig, load_settings

pytest.importorskip("elasticsearch", reason="elasticsearch (prod extra) is not installed")

from flywheel.logstore import open_logstore
from flywheel.logstore.elasticsearch import ElasticsearchLogStore, LogIngestError, LogStoreError


def _cfg(url: str, **extra) -> ElasticsearchConfig:
    return ElasticsearchConfig(hosts=[url], flavor="opensearch", index=f"logs-{uuid.uuid4().hex[:10]}",
                               max_retries=0, **extra)


def _rec(ts, n, workload="w"):
    return {"timestamp": ts, "workload_id": workload, "client_id": "c", "request": {"n": n}, "response": {"n": n}}


def test_bulk_reports_each_refused_record_and_stores_the_rest(opensearch_url):
    with ElasticsearchLogStore(_cfg(opensearch_url, bulk_chunk=2)) as store:
        records = [_rec(100, 0), _rec(101, 1), _rec(102, 2, workload={"not": "a keyword"}), _rec(103, 3),
                   _rec(104, 4, workload=["a", {"b": 1}])]
        report = store.ingest(records)
        assert report.stored == 3
        assert [e.position for e in report.errors] == [2, 4]
        assert all(e.status == 400 and e.type for e in report.errors)
        with pytest.raises(LogIngestError, match="1 record\\(s\\) refused, 1 stored") as caught:
            store.add([_rec(105, 5), _rec(106, 6, workload={"x": 1})])
        assert caught.value.report.errors[0].position == 1
        assert [r["request"]["n"] for r in store.extract("w", "c")] == [5, 3, 1, 0]


def test_index_template_maps_the_filter_fields(opensearch_url):
    import httpx

    cfg = _cfg(opensearch_url)
    with ElasticsearchLogStore(cfg) as store:
        store.add([_rec(100, 0)])
    template = httpx.get(f"{opensearch_url}/_index_template/flywheel-logs-{cfg.index}").json()
    props = httpx.get(f"{opensearch_url}/{cfg.index}/_mapping").json()[cfg.index]["mappings"]["properties"]
    assert template["index_templates"][0]["index_template"]["index_patterns"] == [cfg.index]
    assert props["workload_id"]["type"] == props["client_id"]["type"] == "keyword"
    assert props["timestamp"]["type"] == "date"
    assert props["request"]["enabled"] is False and props["response"]["enabled"] is False


def test_an_existing_dynamically_mapped_index_is_read_through_keyword_subfields(opensearch_url):
    import httpx

    cfg = _cfg(opensearch_url, create_template=False)
    # What a blueprint deployment may have: an index created by dynamic mapping (text + .keyword).
    httpx.put(f"{opensearch_url}/{cfg.index}", json={"mappings": {"properties": {
        "workload_id": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
        "client_id": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
        "timestamp": {"type": "long"}}}}).raise_for_status()
    for n, workload in enumerate(["My-Workload", "My-Workload", "my"]):
        httpx.post(f"{opensearch_url}/{cfg.index}/_doc?refresh=true",
                   json=_rec(100 + n, n, workload=workload)).raise_for_status()
    with ElasticsearchLogStore(cfg) as store:
        assert [r["request"]["n"] for r in store.extract("My-Workload", "c")] == [1, 0]
        assert store.count("my") == 1


def test_open_logstore_from_settings_and_unreachable_host(opensearch_url):
    from tests.helpers.store_servers import free_port

    index = f"logs-{uuid.uuid4().hex[:10]}"
    settings = load_settings(environ={}, overrides={"logstore": {"kind": "elasticsearch", "elasticsearch": {
        "hosts": [opensearch_url], "flavor": "opensearch", "index": index}}})
    store = open_logstore(settings)
    try:
        assert store.add([_rec(100, 0)]) == 1 and store.count() == 1
    finally:
        store.close()
    dead = load_settings(environ={}, overrides={"logstore": {"kind": "elasticsearch", "elasticsearch": {
        "hosts": [f"http://127.0.0.1:{free_port()}"], "flavor": "opensearch", "max_retries": 0,
        "request_timeout_s": 2}}})
    with pytest.raises(LogStoreError, match="log store"):
        open_logstore(dead)


def test_credentials_come_from_env_names(opensearch_url, monkeypatch):
    from flywheel.logstore.es_wire import credentials

    monkeypatch.delenv("TEST_ES_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"logstore\.elasticsearch\.api_key_env.*TEST_ES_KEY"):
        ElasticsearchLogStore(_cfg(opensearch_url, api_key_env="TEST_ES_KEY"))
    assert credentials(ElasticsearchConfig(username_env="U", password_env="P"), {"U": "u", "P": "p"}) == {
        "basic_auth": ("u", "p")}
    assert credentials(ElasticsearchConfig(api_key_env="K"), {"K": "secret"}) == {"api_key": "secret"}


@pytest.mark.parametrize("field,value,needle", [
    ("hosts", ["localhost:9200"], "http:// or https://"),
    ("hosts", [], "at least one host"),
    ("index", "Logs", "invalid index name"),
    ("flavor", "solr", "elasticsearch"),
    ("api_key_env", "not a name", "environment variable name"),
    ("pit_keep_alive", "forever", "pattern"),
    ("page_size", 0, "greater than or equal to 1"),
])
def test_config_is_validated_naming_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=rf"logstore\.elasticsearch\.{field}.*{needle}"):
        load_settings(environ={}, overrides={"logstore": {"elasticsearch": {field: value}}})


def test_auth_settings_must_be_consistent():
    with pytest.raises(ConfigError, match="api_key_env or username_env"):
        load_settings(environ={}, overrides={"logstore": {"elasticsearch": {
            "api_key_env": "K", "username_env": "U", "password_env": "P"}}})
    with pytest.raises(ConfigError, match="go together"):
        load_settings(environ={}, overrides={"logstore": {"elasticsearch": {"username_env": "U"}}})
