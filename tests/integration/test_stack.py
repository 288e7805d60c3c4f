"""The embedded stack's process management: no orphan processes, whatever way it stops."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from starter.stack import EmbeddedStack, ManagedProcess, TemporalDevServer, port_accepts

REPO_ROOT = Path(__file__).resolve().parents[2]


def _tree(pid: int) -> list[int]:
    proc = psutil.Process(pid)
    return [pid] + [child.pid for child in proc.children(recursive=True)]


def _gone(pids: list[int], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_temporal_dev_server_starts_and_stops_without_orphans(tmp_path):
    server = TemporalDevServer(db_file=tmp_path / "temporal.db", log_path=tmp_path / "temporal.log")
    try:
        server.start()
        assert port_accepts("127.0.0.1", server.grpc_port)
        assert server.ui_url and server.ui_port != server.grpc_port
        assert server.workflow_url("wf-1") == f"{server.ui_url}/namespaces/default/workflows/wf-1"
        assert "--search-attribute" in server.argv and "WorkloadId=Keyword" in server.argv
        pids = _tree(server.pid)
    finally:
        server.stop()
    assert _gone(pids), "temporal processes survived stop()"
    assert not port_accepts("127.0.0.1", server.grpc_port)
    assert (tmp_path / "temporal.db").exists()


IGNORES_SIGTERM = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # a grandchild that also ignores SIGTERM: it must not survive either
    subprocess.Popen([sys.executable, "-c",
                      "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
    print("ready", flush=True)
    time.sleep(120)
""")


def test_managed_process_escalates_sigterm_to_sigkill(tmp_path):
    log = tmp_path / "stubborn.log"
    proc = ManagedProcess("stubborn", [sys.executable, "-c", IGNORES_SIGTERM], log,
                          ready_check=lambda: log.exists() and "ready" in log.read_text(), stop_timeout=0.5)
    proc.start()
    try:
        proc.wait_ready(timeout=20)
        deadline = time.monotonic() + 10  # let the grandchild appear
        while len(_tree(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = _tree(proc.pid)
        assert len(pids) == 2
        started = time.monotonic()
        code = proc.stop()
        elapsed = time.monotonic() - started
    finally:
        proc.stop()
    assert code == -signal.SIGKILL
    assert elapsed < 5
    assert _gone(pids)


def test_managed_process_reports_early_exit_with_log_tail(tmp_path):
    proc = ManagedProcess("crasher", [sys.executable, "-c", "print('boom: bad flag'); raise SystemExit(3)"],
                          tmp_path / "crasher.log", port=("127.0.0.1", 1))
    proc.start()
    with pytest.raises(Exception, match="boom: bad flag"):
        proc.wait_ready(timeout=10)
    assert proc.stop() == 3


def test_embedded_stack_stops_everything_even_on_error(tmp_path):
    stack = EmbeddedStack(log_dir=tmp_path / "logs", workers=False, api=False, ui=False)
    with pytest.raises(RuntimeError, match="demo step failed"), stack:
        env = stack.env()
        assert env["FLYWHEEL__TEMPORAL__ADDRESS"] == stack.temporal_address
        assert str(REPO_ROOT) in env["PYTHONPATH"].split(":")
        pids = _tree(stack.temporal.pid)
        raise RuntimeError("demo step failed")
    assert _gone(pids)
    assert (tmp_path / "logs" / "temporal.log").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_embedded_stack_leaves_no_orphans_when_its_process_is_killed(tmp_path, sig):
    # SIGTERM: the stack's handler stops the children; SIGKILL: the children's parent-death signal does.
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from starter.stack import EmbeddedStack
        with EmbeddedStack(log_dir={str(tmp_path / "logs")!r}, workers=False, api=False, ui=False) as stack:
            print(stack.temporal.pid, flush=True)
            time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        temporal_pid = int(parent.stdout.readline())
        pids = _tree(temporal_pid)
        parent.send_signal(sig)
        code = parent.wait(timeout=20)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert _gone(pids), "the Temporal dev server outlived the stack's process"
    if sig == signal.SIGTERM:
        assert code != -signal.SIGTERM, "SIGTERM should have been handled (stack stopped), not been fatal"
