"""The cluster harness itself: hosts reach each other over the test subnet, the subnet never touches the
root namespace, a cut-off host is unreachable and reachable again once reconnected, nothing is left behind."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.cluster.netns import Cluster, assert_isolated, unavailable_reason

pytestmark = pytest.mark.cluster

_REASON = unavailable_reason()
if _REASON is not None:
    pytest.skip(f"network namespaces unavailable here: {_REASON}", allow_module_level=True)

PORT = 18080
_FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).status)\n"
    "except Exception as exc:\n"
    "    print('ERR', type(exc).__name__); sys.exit(1)\n"
)


def _fetch(host, url: str, timeout: float = 2.0) -> subprocess.CompletedProcess:
    return host.run([sys.executable, "-c", _FETCH, url, str(timeout)], timeout=timeout + 10)


def _wait_serving(host, url: str, deadline_s: float = 15.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if _fetch(host, url, 1.0).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered from {host.name}")


def test_hosts_talk_over_the_subnet_and_a_cut_off_host_is_unreachable(tmp_path):
    with Cluster.create(["server", "client", "other"]) as cluster:
        server, client = cluster["server"], cluster["client"]
        assert server.address != client.address
        httpd = server.popen([sys.executable, "-m", "http.server", str(PORT), "--bind", server.address,
                              "--directory", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://{server.address}:{PORT}/"
            _wait_serving(client, url)
            # Loopback is per namespace: the server is not on the client's 127.0.0.1.
            assert _fetch(client, f"http://127.0.0.1:{PORT}/", 1.0).returncode != 0

            server.cut_off()
            assert_isolated(cluster.subnet)  # cutting off happens inside the namespace: root unchanged
            cut = _fetch(client, url, 2.0)
            assert cut.returncode != 0, cut.stdout

            server.reconnect()
            _wait_serving(client, url)
        finally:
            httpd.terminate()
            httpd.wait(10)
        names = {h.netns for h in cluster.hosts.values()} | {cluster.bridge_netns}
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed for name in names), listed
    assert_isolated(cluster.subnet)
