"""Integration fixtures: the NeMo v1 contract emulator and the REAL NeMo Platform services (v2).

* ``emu`` — the v1 contract emulator (tests/emulators/nemo_v1_emulator.py) in front of the module's ``nim``.
* ``nemo_platform`` — ``nemo services run`` from the separate Python 3.12/3.13 venv ``.venv-nemo`` (built by
  ``scripts/nemo_platform_venv.sh``); skips, naming what is missing, when that venv or its interpreter is
  absent. Session-scoped: the services start once (~25 s) for every ``nemo_platform`` test.

The real Temporal dev server (``temporal_env``) is in tests/conftest.py; sample logs and worker helpers for
the end-to-end tests are in tests/helpers/ (sample_logs.py, temporal_workers.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.emulators.openai_scripted import free_port
from tests.helpers import REPO_ROOT

NEMO_VENV = Path(os.environ.get("NEMO_PLATFORM_VENV", REPO_ROOT / ".venv-nemo"))
NEMO_SERVICES = "auth,models,files,inference-gateway,jobs,secrets,entities,evaluator,customization"


# -- NeMo v1 contract emulator -------------------------------------------------------------------
@pytest.fixture
def emu(nim):
    """The v1 contract emulator in front of the module's scripted NIM (each module defines ``nim``)."""
    # Imported here: the emulator needs the `nemo` extra (its SDK types), which other integration tests do not.
    from tests.emulators.nemo_v1_emulator import NemoV1Emulator

    emulator = NemoV1Emulator(nim).start()
    yield emulator
    emulator.stop()


# -- NeMo Platform (v2) --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def nemo_platform(tmp_path_factory) -> Iterator[str]:
    """Base URL of the real NeMo Platform services, started from ``.venv-nemo`` (or, when ``NEMO_PLATFORM_URL``
    is set, services already running there: no start, no stop)."""
    if running := os.environ.get("NEMO_PLATFORM_URL"):
        yield running.rstrip("/")
        return
    nemo = NEMO_VENV / "bin" / "nemo"
    python = NEMO_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"NeMo Platform venv missing: {NEMO_VENV} (run `make nemo-platform`; needs Python 3.12/3.13)")
    try:
        subprocess.run([str(python), "-c", "import sys"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"NeMo Platform venv {NEMO_VENV} has no working Python 3.12/3.13 interpreter: {exc}")
    if not nemo.exists():
        pytest.skip(f"`nemo` CLI missing from {NEMO_VENV}: `pip install nemo-platform[all]==0.6.0` did not complete")
    workdir = tmp_path_factory.mktemp("nemo-platform")
    port = free_port()
    log = open(workdir / "services.log", "w")  # noqa: SIM115 - open while the services run; closed below
    env = {**os.environ, "NEMO_TELEMETRY_ENABLED": "false", "HOME": str(workdir)}
    proc = subprocess.Popen([str(nemo), "services", "run", "--port", str(port), "--services", NEMO_SERVICES,
                             "--controllers", "jobs,models,entities"], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nemo services exited with {proc.returncode}: "
                            f"{(workdir / 'services.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/apis/entities/v2/workspaces", timeout=2).status_code == 200 and \
                        httpx.get(f"{base}/apis/evaluator/v1/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nemo services not healthy in 180 s: {(workdir / 'services.log').read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the services' whole process group
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
