"""The stores host of the cluster test, run inside its namespace: ``python -m tests.cluster.stores_host ADDR OUT``.

Starts, all bound to ``ADDR``: SecantusDB (MongoDB wire protocol), osmem-server (OpenSearch API), moto's S3
server (with the artifact bucket created), and the NeMo v1 contract emulator with its scripted NIM. Writes
their URLs to ``OUT`` (JSON) once all serve, then runs until SIGTERM. ``GET /_emulator/calls`` on the
emulator lists every request it got (method, path), so the test counts remote objects created.
(Temporal's dev server is a separate process: the ``temporal`` binary.)
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from tests.cluster.ports import BUCKET, EMULATOR, MONGO, NIM, OPENSEARCH, S3
from tests.emulators.nemo_v1_emulator import NemoV1Emulator
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.integration.test_nemo_v1_flywheel import make_responder


def serve(app, host: str, port: int, name: str) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True, name=name).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start on {host}:{port}")
        time.sleep(0.05)
    return server


def main() -> None:
    addr, out = sys.argv[1], Path(sys.argv[2])
    from moto.server import ThreadedMotoServer
    from osmem_server import OsmemServer
    from secantus import SecantusDBServer

    mongo = SecantusDBServer(host=addr, port=MONGO, storage_path=tempfile.mkdtemp(prefix="secantus-"))
    mongo.start()
    opensearch = OsmemServer.start(japanese=False, addr=f"{addr}:{OPENSEARCH}")
    s3 = ThreadedMotoServer(ip_address=addr, port=S3, verbose=False)
    s3.start()
    import boto3

    boto3.client("s3", endpoint_url=f"http://{addr}:{S3}", aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)

    class HostNim(ScriptedOpenAI):
        @property
        def root_url(self) -> str:
            return f"http://{addr}:{NIM}"

        @property
        def base_url(self) -> str:
            return f"{self.root_url}/v1"

    class HostEmulator(NemoV1Emulator):
        @property
        def url(self) -> str:
            return f"http://{addr}:{EMULATOR}"

    nim = HostNim(models=[], responder=make_responder())
    emu = HostEmulator(nim)
    # Long enough for the test to cut a worker host off while the Customizer job runs.
    emu.customization_script = [{"status": "created"}, {"status": "pending"}] + [
        {"status": "running", "percentage_done": float(p), "epochs_completed": 1, "steps_completed": p // 10}
        for p in range(2, 100, 2)] + [{"status": "completed", "percentage_done": 100.0, "epochs_completed": 2,
                                       "steps_completed": 10, "train_loss": 0.25}]
    emu.app.add_api_route("/_emulator/calls", lambda: [list(c) for c in emu.calls], methods=["GET"])
    servers = [serve(nim.app, addr, NIM, "nim"), serve(emu.app, addr, EMULATOR, "emulator")]
    out.write_text(json.dumps({"mongo": mongo.uri, "opensearch": opensearch.url, "s3": f"http://{addr}:{S3}",
                               "emulator": emu.url, "nim": nim.root_url}))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.should_exit = True
    s3.stop()
    opensearch.close()
    mongo.stop()


if __name__ == "__main__":
    main()
