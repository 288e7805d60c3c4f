"""Worker processes: ``flywheel-worker --queue orchestrator|cpu|gpu|all [--config PATH] [--config-name NAME]``.

- orchestrator: FlywheelRun + CandidateRun + EmbeddingCandidateRun (deterministic orchestration only)
- cpu: every activity (I/O: extract, split, upload, deploy/poll, evaluate, persist)
- gpu: local training (one slot per visible CUDA GPU, or 1 on a CPU-only host)

``--health-port PORT`` serves ``/healthz`` and ``/readyz`` for Kubernetes probes (:mod:`workers.health`).

SIGTERM/SIGINT → graceful shutdown: running activities get ``graceful_shutdown_timeout`` to finish
or flush their last heartbeat (checkpoint URI) before being cancelled. Workers never purge queues
or tear down running jobs on start/stop: another worker picks the work up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

import activities as acts
from activities.common import close_platforms
from flywheel.config import ConfigError, Settings, load_settings
from workers.connection import connect
from workers.health import HealthServer, WorkerHealth, monitor
from workers.payload_codec import PayloadKeyError, data_converter_for
from workers.search_attributes import ensure_search_attributes
from workflows.candidate_run import CandidateRun
from workflows.embedding_candidate_run import EmbeddingCandidateRun
from workflows.flywheel_run import FlywheelRun
from workflows.remove_run import RemoveRunResources

log = logging.getLogger("flywheel.workers")

QUEUES = ("orchestrator", "cpu", "gpu")
_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={...}`` fields are included."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


HEARTBEAT_THROTTLE_S = 5.0

# How long a gpu worker needs after SIGTERM to suspend a training: the trainer stops at the next micro-batch
# boundary and writes a checkpoint (adapter, optimizer, scheduler, RNG, data position; see docs/training.md).
# One micro-batch at max_seq_length on a slow CPU node is tens of seconds and a checkpoint a few more; this
# budget leaves ample room. Deployments give the gpu worker --graceful-shutdown-s >= this and a pod grace
# period above that (deploy/ tests check both).
TRAINING_SUSPEND_BUDGET_S = 300


def gpu_slots() -> tuple[int, str]:
    """(slots, why): visible CUDA GPUs if torch sees any, else 1 (CPU training)."""
    try:
        import torch  # noqa: PLC0415 - heavy; only for the gpu queue

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as exc:  # noqa: BLE001
        return 1, f"torch unavailable ({type(exc).__name__}); 1 CPU training slot"
    if count > 0:
        return count, f"{count} visible CUDA GPU(s)"
    return 1, "no CUDA GPU visible; 1 CPU training slot"


def expand_queues(queue: str) -> list[str]:
    return list(QUEUES) if queue == "all" else [queue]


def workflows() -> list[type]:
    return [FlywheelRun, CandidateRun, RemoveRunResources, EmbeddingCandidateRun]


def build_workers(
    client: Client,
    settings: Settings,
    queues: Sequence[str],
    *,
    cpu_activities: Sequence[Callable] | None = None,
    gpu_activities: Sequence[Callable] | None = None,
    gpu_slot_count: int | None = None,
    graceful_shutdown_s: float = 30.0,
    **worker_kwargs: Any,
) -> list[Worker]:
    """One Worker per requested queue. Tests pass fake activities (registered under the real names)."""
    names = settings.temporal.task_queues
    common = {
        "graceful_shutdown_timeout": timedelta(seconds=graceful_shutdown_s),
        # Heartbeats carry live progress (evaluation %, training step/loss) to the job document; the SDK
        # would otherwise send them at most every min(0.8 x heartbeat timeout, 60 s).
        "max_heartbeat_throttle_interval": timedelta(seconds=HEARTBEAT_THROTTLE_S),
        "default_heartbeat_throttle_interval": timedelta(seconds=HEARTBEAT_THROTTLE_S),
        **worker_kwargs,
    }
    out: list[Worker] = []
    for queue in queues:
        if queue == "orchestrator":
            out.append(Worker(client, task_queue=names.orchestrator, workflows=workflows(), **common))
        elif queue == "cpu":
            out.append(Worker(client, task_queue=names.cpu,
                              activities=list(cpu_activities if cpu_activities is not None else acts.all_activities()),
                              **common))
        elif queue == "gpu":
            if gpu_slot_count is None:
                gpu_slot_count, why = gpu_slots()
                log.info("gpu queue slots", extra={"slots": gpu_slot_count, "why": why})
            out.append(Worker(client, task_queue=names.gpu, max_concurrent_activities=gpu_slot_count,
                              activities=list(gpu_activities if gpu_activities is not None else acts.gpu_activities()),
                              **common))
        else:
            raise ValueError(f"unknown queue {queue!r} (orchestrator, cpu, gpu or all)")
    return out


async def run_workers(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    """Run until ``stop`` is set, then shut down gracefully (heartbeats/checkpoints flush)."""
    tasks = [asyncio.create_task(w.run()) for w in workers]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    if stopper not in done:  # a worker died on its own: surface the error
        stopper.cancel()
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            pass


async def serve(settings: Settings, queues: Sequence[str], *, ensure_attributes: bool = True,
                health_port: int | None = None, health_host: str = "0.0.0.0", **build_kwargs: Any) -> None:
    """Connect, run the queues' workers until SIGTERM/SIGINT; with ``health_port``, serve /healthz and /readyz."""
    health = WorkerHealth() if health_port is not None else None
    server = HealthServer(health, health_port, health_host).start() if health is not None else None
    # Liveness beats from the start; readiness waits for the connection and the pollers.
    watcher = asyncio.create_task(monitor(health, None)) if health is not None else None
    try:
        client = await connect(settings)
        if ensure_attributes:
            try:
                await ensure_search_attributes(client, settings.temporal.namespace)
            except Exception as exc:  # noqa: BLE001 - may lack operator rights on a real cluster
                log.warning("could not ensure search attributes (create them with `temporal operator "
                            "search-attribute create`)", extra={"error": str(exc)})
        if health is not None:
            build_kwargs["interceptors"] = [*build_kwargs.get("interceptors", ()), health.interceptor()]
        workers = build_workers(client, settings, queues, **build_kwargs)
        if health is not None:
            for worker in workers:
                health.add_queue(*_slot_capacity(worker))
            watcher.cancel()
            watcher = asyncio.create_task(monitor(health, client))
            health.polling = True
        stop = asyncio.Event()
        install_signal_handlers(stop)
        log.info("workers started", extra={
            "address": settings.temporal.address, "namespace": settings.temporal.namespace,
            "task_queues": [w.task_queue for w in workers], "platform": settings.platform.kind,
            "config_name": settings.config_name, "health_port": server.port if server else None})
        try:
            await run_workers(workers, stop)
        finally:
            await close_platforms()  # model servers, HTTP clients: nothing outlives the worker process's run
        log.info("workers stopped")
    finally:
        if health is not None:
            health.polling = False
        if watcher is not None:
            watcher.cancel()
        if server is not None:
            server.stop()


# temporalio's slot count when a Worker is given no max_concurrent_* (and no tuner).
SDK_DEFAULT_SLOTS = 100


def _slot_capacity(worker: Worker) -> tuple[str, str, int]:
    """(task queue, slot kind, capacity) as the health endpoint reports it."""
    config = worker.config()
    if config.get("workflows"):
        return worker.task_queue, "workflow_task", config.get("max_concurrent_workflow_tasks") or SDK_DEFAULT_SLOTS
    return worker.task_queue, "activity", config.get("max_concurrent_activities") or SDK_DEFAULT_SLOTS


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flywheel-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--queue", choices=[*QUEUES, "all"], default="all")
    parser.add_argument("--config", help="YAML config file (overrides config/default.yaml)")
    parser.add_argument("--config-name", help="named config in config/ (e.g. demo)")
    parser.add_argument("--graceful-shutdown-s", type=float, default=30.0)
    parser.add_argument("--no-ensure-search-attributes", action="store_true")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--health-port", type=int, default=None,
                        help="serve GET /healthz (liveness) and /readyz (Temporal connectivity, slot usage) here")
    parser.add_argument("--health-host", default="0.0.0.0")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = load_settings(args.config, args.config_name)
        data_converter_for(settings)  # a payload key that is missing or malformed stops us here, by its env var
    except (ConfigError, PayloadKeyError) as exc:
        log.error("invalid configuration", extra={"error": str(exc)})
        raise SystemExit(2) from exc
    asyncio.run(serve(settings, expand_queues(args.queue), ensure_attributes=not args.no_ensure_search_attributes,
                      graceful_shutdown_s=args.graceful_shutdown_s, health_port=args.health_port,
                      health_host=args.health_host))


if __name__ == "__main__":
    main()
