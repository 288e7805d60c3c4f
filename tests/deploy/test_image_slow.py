"""Slow lane: build the slim image from deploy/Dockerfile and run a flywheel job with it.

No registry image can be pulled on the build machines, so the base is made locally: `debootstrap
--variant=minbase bookworm` (Debian bookworm ships Python 3.11) imported into buildah as
`localhost/flywheel-test-base:bookworm` and passed as the BASE_IMAGE build argument. `buildah bud
--isolation chroot` builds the `slim` target with its RUN steps; `buildah run --isolation chroot
--network host` then runs the image's API and a worker (as the image's non-root USER, through its
entrypoint) against a Temporal dev server on the host, with platform nemo_v1 pointed at the NeMo v1 contract
emulator. The job is started and followed through the image's API until it completes.

Needs root, buildah and debootstrap (scripts/install_image_tools.sh) and the Debian and PyPI registries.
Build time and image size are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from flywheel.config import Settings
from starter.auth import KeyStore
from starter.auth.authenticator import default_keys_file
from starter.processes import free_port
from starter.stack import TemporalDevServer
from tests.deploy.rendered import REPO
from tests.emulators.nemo_v1_emulator import NemoV1Emulator
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.helpers.sample_logs import NUM_SAMPLE_RECORDS, SAMPLE_CLIENT, SAMPLE_WORKLOAD, load_sample_logs
from tests.integration.test_nemo_v1_flywheel import BASE, NS, make_responder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),  # a cold build (debootstrap + pip install of the slim target) takes minutes
    pytest.mark.skipif(not (shutil.which("buildah") and shutil.which("debootstrap")),
                       reason="buildah and debootstrap are not installed (scripts/install_image_tools.sh)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and buildah chroot builds need root"),
]

BASE_IMAGE = "localhost/flywheel-test-base:bookworm-1"
SLIM_IMAGE = "localhost/flywheel:test-slim"
DEBIAN_MIRROR = os.environ.get("FLYWHEEL_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def sh(*argv: str, timeout: float = 1800, **kwargs: Any) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def image_exists(name: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", name], capture_output=True).returncode == 0


def build_base(tmp: Path) -> None:
    """debootstrap a minimal bookworm with Python 3.11 + venv, import it as BASE_IMAGE."""
    rootfs = tmp / "rootfs"
    sh("debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
       "bookworm", str(rootfs), DEBIAN_MIRROR)
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    # The base carries this machine's trusted CAs (as a site's base image carries its own): the registries
    # the build's pip reaches may sit behind a TLS-intercepting proxy the host trusts.
    host_bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if host_bundle.exists():
        shutil.copyfile(host_bundle, rootfs / "etc/ssl/certs/ca-certificates.crt")
    tarball = tmp / "rootfs.tar"
    sh("tar", "-C", str(rootfs), "-cf", str(tarball), ".")
    ctr = sh("buildah", "from", "scratch").strip()
    try:
        sh("buildah", "add", ctr, str(tarball), "/")
        sh("buildah", "config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt", "--cmd", "/bin/sh", ctr)
        sh("buildah", "commit", "--rm", ctr, BASE_IMAGE)
    except BaseException:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
        raise


@pytest.fixture(scope="module")
def slim_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("image")
    t0 = time.monotonic()
    if not image_exists(BASE_IMAGE):
        build_base(tmp)
    t_base = time.monotonic() - t0
    t1 = time.monotonic()
    sh("nice", "-n", "10", "buildah", "bud", "--isolation", "chroot", "--network", "host", "--layers=true",
       "-f", "deploy/Dockerfile", "--target", "slim", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
       "-t", SLIM_IMAGE, ".", cwd=REPO, timeout=3600)
    t_build = time.monotonic() - t1
    size = sh("buildah", "images", "--format", "{{.Size}}", SLIM_IMAGE).strip()
    config = json.loads(sh("buildah", "inspect", "--type", "image", SLIM_IMAGE))["OCIv1"]["config"]
    print(f"\n[image] base (debootstrap) {t_base:.0f} s; slim build {t_build:.0f} s; size {size}; "
          f"user {config.get('User')}; entrypoint {config.get('Entrypoint')}")
    assert config["User"] == "10001:0"
    yield SLIM_IMAGE


class ImageProcess:
    """`buildah run --isolation chroot --network host` of one command in a fresh container of the image."""

    def __init__(self, image: str, argv: list[str], data_dir: Path, log: Path) -> None:
        self.ctr = sh("buildah", "from", image).strip()
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            ["buildah", "run", "--isolation", "chroot", "--network", "host", "-v", f"{data_dir}:/data",
             self.ctr, "--", "/app/entrypoint.sh", *argv],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.log_path = log

    def tail(self) -> str:
        return self.log_path.read_text()[-3000:]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            # SIGTERM the process inside the container, as a container runtime does on stop; signalling
            # buildah's own chroot runtime makes it kill its child instead.
            inside = [p for p in psutil.Process(self.proc.pid).children(recursive=True) if not p.children()]
            for proc in inside:
                proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        subprocess.run(["buildah", "rm", self.ctr], capture_output=True)
        return self.proc.returncode


def http_json(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None,
              ) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token is not None:  # every API route but /health needs a key
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_until(check, timeout: float, what: str, procs: list[ImageProcess]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            assert p.proc.poll() is None, f"{p.proc.args[-3:]} exited: {p.tail()}"
        try:
            result = check()
            if result:
                return result
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n---\n".join(p.tail() for p in procs))


def test_slim_image_runs_a_flywheel_job_on_the_nemo_v1_emulator(slim_image: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    nim = ScriptedOpenAI(models=[], responder=make_responder()).start()
    emu = NemoV1Emulator(nim).start()
    temporal = TemporalDevServer(ui=False).start()
    procs: list[ImageProcess] = []
    try:
        temporal.wait_ready(timeout=60)
        config = {
            "platform": {"kind": "nemo_v1", "data_dir": "/data"},
            "temporal": {"address": temporal.address, "review_timeout_s": 0,
                         "task_queues": {"orchestrator": "img-orch", "cpu": "img-cpu", "gpu": "img-gpu"}},
            "nmp_config": {"nemo_base_url": emu.url, "datastore_base_url": emu.url, "nim_base_url": nim.root_url,
                           "nmp_namespace": NS, "poll_interval_s": 0.05, "pending_timeout_s": 30},
            "nims": [{"model_name": BASE, "context_length": 8192, "customization_enabled": True, "tag": "1.8.3",
                      "customizer_configs": {"target": f"{BASE}@2.0"}, "cost_per_1k_tokens": 0.01}],
            "data_split_config": {"eval_size": 10, "val_ratio": 0.1, "min_total_records": 20},
            "training_config": {"epochs": 2, "batch_size": 8},
            "evaluation": {"concurrency": 4, "request_timeout_s": 10, "max_retries": 1},
        }
        (data / "flywheel.yaml").write_text(yaml.safe_dump(config))
        # The logs the job reads: loaded on the host into the SQLite store on the shared /data volume.
        host_settings = Settings.model_validate({**config, "platform": {"kind": "nemo_v1", "data_dir": str(data)}})
        load_sample_logs(host_settings)
        # An operator key in the API's key file on the shared volume (/data/api_keys.json inside the image).
        token, _ = KeyStore(default_keys_file(host_settings)).create("image-test", ["operator"])
        for path in [data, *data.rglob("*")]:  # the image's USER (10001, group 0) writes the stores
            os.chown(path, 10001, 0)

        api_port, health_port = free_port(), free_port()
        procs.append(ImageProcess(slim_image, ["worker", "--queue", "all", "--config", "/data/flywheel.yaml",
                                               "--health-port", str(health_port)], data, tmp_path / "worker.log"))
        procs.append(ImageProcess(slim_image, ["api", "--config", "/data/flywheel.yaml", "--port", str(api_port)],
                                  data, tmp_path / "api.log"))
        api = f"http://127.0.0.1:{api_port}"
        def ok_body(url: str) -> Any:
            code, body = http_json("GET", url)
            return body if code == 200 else None

        ready = wait_until(lambda: ok_body(f"http://127.0.0.1:{health_port}/readyz"), 120, "worker readiness", procs)
        assert ready["temporal"] == "ok" and set(ready["slots"]) == {"img-orch", "img-cpu", "img-gpu"}
        health = wait_until(lambda: (b := ok_body(f"{api}/health")) and b["temporal"] == "ok" and b, 60,
                            "API health", procs)
        assert health["temporal"] == "ok", health

        code, created = http_json("POST", f"{api}/api/jobs", {"workload_id": SAMPLE_WORKLOAD,
                                                              "client_id": SAMPLE_CLIENT}, token)
        assert code == 200, created
        job_id = created["id"]

        def finished() -> dict[str, Any] | None:
            status, doc = http_json("GET", f"{api}/api/jobs/{job_id}", token=token)
            return doc if status == 200 and doc["status"] in {"completed", "failed", "cancelled"} else None

        doc = wait_until(finished, 300, f"job {job_id}", procs)
        assert doc["status"] == "completed", (json.dumps({k: doc.get(k) for k in ("error", "nims")})[:3000]
                                              + "\n" + procs[0].tail())
        assert doc["num_records"] == NUM_SAMPLE_RECORDS
        (cand,) = doc["nims"]
        assert {e["eval_type"] for e in cand["evaluations"]} == {"base-eval", "icl-eval", "customized-eval"}
        assert emu.count("POST", "/v1/customization/jobs") == 1
        assert emu.count("POST", "/v1/evaluation/jobs") == 3

        worker, api_proc = procs
        # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal (buildah reports that as status 1).
        api_proc.stop()
        assert "Application shutdown complete" in api_proc.tail(), api_proc.tail()
        assert worker.stop() == 0, worker.tail()  # graceful shutdown on SIGTERM
    finally:
        for p in procs:
            if p.proc.returncode is None:
                p.stop()
        temporal.stop()
        emu.stop()
        nim.stop()
