"""Evaluator orchestration overhead: N requests to a fixed-latency OpenAI-compatible endpoint.

The endpoint is a minimal asyncio HTTP/1.1 server (keep-alive, no framework) in a separate process
that answers every POST after exactly ``--latency-s`` with one tool call. With C requests in flight
the ideal wall time is ceil(N / C) × latency; efficiency = ideal / achieved (target ≥ 0.95).

    python -m bench.bench_eval_orchestration [--n 1000] [--concurrency 32] [--latency-s 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flywheel.evaluator import evaluate
from flywheel.types import DatasetRef, Endpoint, EvalSpec

TARGET_EFFICIENCY = 0.95
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
_BODY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}}],
    "usage": {"prompt_tokens": 120, "completion_tokens": 18, "total_tokens": 138},
}).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(_BODY)).encode() + b"\r\nconnection: keep-alive\r\n\r\n" + _BODY)


class FixedLatencyProtocol(asyncio.Protocol):
    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (head_end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buffer[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            asyncio.get_running_loop().call_later(self.latency_s, self._respond)

    def _respond(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)


async def serve(port: int, latency_s: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FixedLatencyProtocol(latency_s), "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_rows(n: int) -> list[dict]:
    return [{
        "record_id": f"r{i}", "timestamp": 0, "workload_id": "bench", "client_id": "bench",
        "request": {"model": "big", "tools": TOOLS, "messages": [
            {"role": "system", "content": "You are a helpful assistant that calls tools when needed."},
            {"role": "user", "content": f"What's the weather in Paris? (request {i})"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}}]},
    } for i in range(n)]


def make_spec(port: int, n: int, concurrency: int) -> EvalSpec:
    return EvalSpec(name="bench-base-eval", eval_type="base-eval",
                    dataset=DatasetRef(name="bench", split="eval", uri="memory://bench", num_records=n),
                    endpoint=Endpoint(deployment_name="bench", model_name="bench", served_model="bench",
                                      base_url=f"http://127.0.0.1:{port}/v1"),
                    concurrency=concurrency, max_retries=0)


async def raw_client_baseline(port: int, n: int, concurrency: int) -> float:
    """The same N requests from a bare asyncio-streams client (no httpx, no scoring, no files):
    what this machine allows at all, so the evaluator's own overhead can be told from CPU contention."""
    body = json.dumps({"model": "bench", "messages": make_rows(1)[0]["request"]["messages"]}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
               b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    remaining = iter(range(n))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in remaining:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            json.loads(await reader.readexactly(length))
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def measure(port: int, n: int, concurrency: int, workdir: Path) -> tuple[float, float, object]:
    await evaluate(make_spec(port, concurrency, concurrency), make_rows(concurrency),
                   predictions_path=workdir / "warmup.jsonl")
    rows = make_rows(n)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = await evaluate(make_spec(port, n, concurrency), rows, predictions_path=workdir / "predictions.jsonl")
    return time.perf_counter() - started, time.process_time() - cpu_started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-s", type=float, default=0.1)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.latency_s))
        return 0

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.bench_eval_orchestration", "--serve", str(port),
                               "--latency-s", str(args.latency_s)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory() as tmp:
            achieved, cpu_s, result = asyncio.run(measure(port, args.n, args.concurrency, Path(tmp)))
            baseline = asyncio.run(raw_client_baseline(port, args.n, args.concurrency))
    finally:
        server.terminate()
        server.wait(timeout=10)
    ideal = math.ceil(args.n / args.concurrency) * args.latency_s
    efficiency = ideal / achieved
    print(f"evaluate(): N={args.n} concurrency={args.concurrency} endpoint latency={args.latency_s * 1000:.0f} ms")
    print(f"{'measure':<28}{'measured':>12}{'ideal':>12}{'ratio':>10}")
    print(f"{'wall time (s)':<28}{achieved:>12.3f}{ideal:>12.3f}{efficiency:>10.3f}")
    print(f"{'raw asyncio client (s)':<28}{baseline:>12.3f}{ideal:>12.3f}{ideal / baseline:>10.3f}")
    print(f"{'requests / s':<28}{args.n / achieved:>12.1f}{args.n / ideal:>12.1f}{efficiency:>10.3f}")
    print(f"{'latency p50 (ms)':<28}{result.latency_p50_ms:>12.1f}{args.latency_s * 1000:>12.1f}"
          f"{args.latency_s * 1000 / result.latency_p50_ms:>10.3f}")
    print(f"{'latency p95 (ms)':<28}{result.latency_p95_ms:>12.1f}{args.latency_s * 1000:>12.1f}"
          f"{args.latency_s * 1000 / result.latency_p95_ms:>10.3f}")
    print(f"client CPU: {cpu_s:.2f} s in all, {cpu_s / args.n * 1000:.2f} ms per request "
          f"({cpu_s / achieved:.0%} of one core); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"scores={result.scores['function_name']:.3f}/{result.scores['function_name_and_args_accuracy']:.3f} "
          f"errors={result.num_errors}")
    verdict = "PASS" if efficiency >= TARGET_EFFICIENCY else "BELOW TARGET"
    print(f"efficiency (ideal/achieved) = {efficiency:.3f}  target >= {TARGET_EFFICIENCY}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
