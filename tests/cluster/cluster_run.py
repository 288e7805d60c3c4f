"""The cluster test's hosts and processes: the config every host reads, each host's private directory, and
the steps every scenario shares (stores, workers, the starter API, a run started and followed through it).

The test process lives in the root namespace and cannot reach the test subnet: everything that talks to a
service runs as a process inside a host's namespace (:meth:`ClusterRun.start`, :meth:`ClusterRun.on`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.cluster.netns import Cluster
from tests.cluster.ports import API, BUCKET, TEMPORAL
from tests.conftest import TEMPORAL_CLI
from tests.helpers import REPO_ROOT
from tests.helpers.sample_logs import SAMPLE_CLIENT, SAMPLE_WORKLOAD

# Every host a namespace of its own: the operator's machine (``client``) reaches only the API.
HOSTS = ["stores", "api", "client", "cpu1", "cpu2", "gpu1", "gpu2"]
CPU_HOSTS, GPU_HOSTS = ("cpu1", "cpu2"), ("gpu1", "gpu2")
OPERATOR = "cluster-operator"  # the API key's name: the job's requested_by is api_key:<this>

BASE = "meta/llama-3.2-1b-instruct"
GEMMA, GEMMA_PACKAGE = "gemma-3-270m", "gemma-3-270m-q4_k_m"
EVAL_SIZE = 6
LOCAL_EVAL_SIZE, LOCAL_RECORDS = 2, 30
TRAIN_STEPS, CHECKPOINT_EVERY = 4, 1

# Small heartbeat timeouts (temporal.activity_timeouts): a cut-off host's activity is retried elsewhere
# within seconds, not production's minutes.
ACTIVITY_TIMEOUTS = {
    "nemo_v1": {"deploy_heartbeat_s": 6, "evaluate_heartbeat_s": 6, "customize_heartbeat_s": 6,
                "short_start_to_close_s": 20, "retry_initial_interval_s": 0.5, "retry_max_interval_s": 2.0,
                "max_attempts": 10},
    # A real model on shared cores: heartbeats can lag, short activities take longer.
    "local": {"deploy_heartbeat_s": 20, "evaluate_heartbeat_s": 20, "customize_heartbeat_s": 20,
              "short_start_to_close_s": 120, "retry_initial_interval_s": 1.0, "retry_max_interval_s": 3.0,
              "max_attempts": 10},
}


def local_overrides() -> dict:
    return {
        "platform": {"kind": "local", "data_dir": "unused-set-per-host"},
        "nims": [{"model_name": GEMMA, "context_length": 2048, "customization_enabled": True,
                  "source": {"package": GEMMA_PACKAGE}}],
        "data_split_config": {"eval_size": LOCAL_EVAL_SIZE, "val_ratio": 0.1, "min_total_records": 20,
                              "limit": LOCAL_RECORDS},
        "icl_config": {"max_examples": 1, "min_examples": 1, "reserved_tokens": 512},
        "training_config": {"epochs": 1, "batch_size": 1, "learning_rate": 1e-3, "max_steps": TRAIN_STEPS,
                            "max_seq_length": 512, "checkpoint_every_steps": CHECKPOINT_EVERY},
        "lora_config": {"adapter_dim": 8, "adapter_dropout": 0.05},
        "evaluation": {"concurrency": 1, "max_tokens": 48, "request_timeout_s": 120, "max_retries": 1},
    }


def config_for(stores: str, services: dict, platform: str) -> dict:
    config = {
        "platform": {"kind": "nemo_v1", "data_dir": "unused-set-per-host"},
        "cluster": {"enabled": True},
        "temporal": {"address": f"{stores}:{TEMPORAL}", "review_timeout_s": 0,
                     "activity_timeouts": ACTIVITY_TIMEOUTS[platform]},
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


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class ClusterRun:
    def __init__(self, cluster: Cluster, tmp: Path, platform: str, model_cache: Path | None = None) -> None:
        self.cluster, self.tmp, self.platform, self.model_cache = cluster, tmp, platform, model_cache
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TEST_S3_KEY": "testing",
                    "TEST_S3_SECRET": "testing", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
        self.config = tmp / "cluster.yaml"
        self.api_key: str | None = None  # read from the API host's key file setup; only the client host gets it
        self.job_id = self.wf_id = ""

    # -- processes on hosts ------------------------------------------------------------------------
    def host_dir(self, host: str) -> Path:
        return self.tmp / host

    def host_env(self, host: str, extra: dict | None = None) -> dict:
        data_dir = self.host_dir(host) / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.model_cache is not None and not (data_dir / "models").exists():
            # Each host provisions its own weights; here from one read-only package cache.
            (data_dir / "models").symlink_to(self.model_cache, target_is_directory=True)
        return {**self.env, "FLYWHEEL__PLATFORM__DATA_DIR": str(data_dir), **(extra or {})}

    def start(self, host: str, label: str, argv: list[str], extra_env: dict | None = None) -> subprocess.Popen:
        log = (self.tmp / f"{host}-{label}.log").open("wb")
        proc = self.cluster[host].popen(["nice", "-n", "10", *argv], env=self.host_env(host, extra_env),
                                        stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        self.procs.append((host, proc))
        return proc

    def on(self, host: str, argv: list[str], extra_env: dict | None = None, timeout: float = 120,
           ) -> subprocess.CompletedProcess:
        return self.cluster[host].run(["nice", "-n", "10", *argv], env=self.host_env(host, extra_env),
                                      cwd=REPO_ROOT, timeout=timeout)

    def driver(self, host: str, *args: str, timeout: float = 120) -> dict:
        done = self.on(host, [sys.executable, "-m", "tests.cluster.driver", args[0], str(self.config), *args[1:]],
                       timeout=timeout)
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

    # -- the training audit of the gpu hosts (tests/cluster/gpu_worker.py) --------------------------
    def audit(self, host: str) -> Path:
        return self.host_dir(host) / "steps.jsonl"

    def events(self, host: str, kind: str | None = None) -> list[dict]:
        path = self.audit(host)
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        return [r for r in rows if kind is None or r["event"] == kind]

    # -- the shared steps ---------------------------------------------------------------------------
    def start_stores_and_workers(self) -> dict:
        """Temporal + stores on ``stores``, the sample logs loaded, workers on the CPU and GPU hosts."""
        stores = self.cluster["stores"].address
        # 0.0.0.0 inside the stores namespace: the dev server's services dial each other on loopback.
        self.start("stores", "temporal", [str(TEMPORAL_CLI), "server", "start-dev", "--ip", "0.0.0.0", "--port",
                                           str(TEMPORAL), "--headless", "--log-level", "error"])
        services_file = self.tmp / "services.json"
        launcher = self.start("stores", "stores", [sys.executable, "-m", "tests.cluster.stores_host", stores,
                                                   str(services_file)])
        wait_for(lambda: services_file.exists() or launcher.poll() is not None, 90, "the stores host")
        assert launcher.poll() is None, (self.tmp / "stores-stores.log").read_text()[-4000:]
        services = json.loads(services_file.read_text())
        self.env["FLYWHEEL_MONGO_URI"] = services["mongo"]
        self.config.write_text(yaml.safe_dump(config_for(stores, services, self.platform)))

        loaded = self.driver("api", "load-logs", *(["compact"] if self.platform == "local" else []))
        wait_for(lambda: self.on("api", [str(TEMPORAL_CLI), "operator", "cluster", "health", "--address",
                                         f"{stores}:{TEMPORAL}"], timeout=30).returncode == 0,
                 120, "the Temporal dev server", 1.0)
        worker = ["--config", str(self.config), "--graceful-shutdown-s", "0", "--log-level", "WARNING", "--queue"]
        for host in CPU_HOSTS:
            for queue in ("orchestrator", "cpu"):
                self.start(host, queue, [sys.executable, "-m", "workers", *worker, queue])
        for host in GPU_HOSTS:
            self.start(host, "gpu", [sys.executable, "-m", "tests.cluster.gpu_worker", str(self.audit(host)),
                                     *worker, "gpu"])
        return {"services": services, "loaded": loaded["loaded"]}

    @property
    def api_url(self) -> str:
        return f"http://{self.cluster['api'].address}:{API}"

    def start_api(self) -> None:
        """The starter API on its own host, with an operator key created in its key file (docs/security.md)."""
        made = self.on("api", [sys.executable, "-m", "starter.auth", "--config", str(self.config), "create",
                               "--name", OPERATOR, "--role", "operator", "--quiet"])
        assert made.returncode == 0, made.stderr
        self.api_key = made.stdout.strip()
        assert self.api_key.startswith("fwk_")
        assert (self.host_dir("api") / "data" / "api_keys.json").is_file()  # the API host's own key file
        self.start("api", "api", [sys.executable, "-m", "starter.serve", "--config", str(self.config),
                                  "--log-level", "warning", "--log-format", "json"])
        probe = [sys.executable, "-c", "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)",
                 f"{self.api_url}/health"]
        wait_for(lambda: self.on("client", probe, timeout=30).returncode == 0, 120, "the starter API", 1.0)

    def start_job_through_api(self) -> dict:
        """``flywheel remote run`` on the operator's machine: POST /api/jobs with the key."""
        done = self.on("client", [sys.executable, "-m", "starter.cli", "remote", "run", "--workload-id",
                                  SAMPLE_WORKLOAD, "--client-id", SAMPLE_CLIENT, "--api-url", self.api_url],
                       extra_env={"FLYWHEEL_API_KEY": self.api_key})
        assert done.returncode == 0, f"remote run failed:\n{done.stdout}\n{done.stderr[-4000:]}"
        answer = json.loads(done.stdout)
        assert answer["status"] == "queued", answer
        from workflows.models import flywheel_workflow_id

        self.job_id = answer["id"]
        self.wf_id = flywheel_workflow_id(SAMPLE_WORKLOAD, SAMPLE_CLIENT, self.job_id)
        return answer

    def watch_job(self, timeout_s: float) -> subprocess.Popen:
        """The operator follows the job through GET /api/jobs/{id} (tests/cluster/api_watch.py)."""
        return self.start("client", "watch", [sys.executable, "-m", "tests.cluster.api_watch", self.api_url,
                                              self.job_id, str(self.watched_docs), str(timeout_s)],
                          extra_env={"FLYWHEEL_API_KEY": self.api_key})

    @property
    def watched_docs(self) -> Path:
        return self.host_dir("client") / "job-docs.jsonl"

    def api_documents(self) -> list[dict]:
        return [json.loads(line) for line in self.watched_docs.read_text().splitlines() if line.strip()]

    def pending(self, model: str) -> dict:
        return self.driver("api", "pending", self.wf_id, model)
