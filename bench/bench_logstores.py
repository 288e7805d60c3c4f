"""Log-store benchmark: extract throughput and peak RSS of the Elasticsearch/OpenSearch store (on osmem-server)
next to the SQLite store, at the same N in one run.

    python -m bench.bench_logstores [--n 100000] [--page-size 1000]

Each (store, case) runs in its own subprocess so peak RSS is per case (the client process only; osmem's
own RSS is printed separately). Cases:

- ``add``     bulk-add N synthetic records (generation time excluded; ES: bulk chunks + one refresh);
- ``extract`` stream all N back newest first (SQLite: keyset pages; ES: point in time + search_after pages),
              JSON decode included. ``rss_before_mb`` is the RSS after opening the store, so
              ``peak - before`` is what streaming N records cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_data_path import TimedSource, _generator, _peak_rss_mb, cpu_calibration_s

ROOT = Path(__file__).resolve().parent.parent
STORES = ("sqlite", "elasticsearch")
CASES = ("add", "extract")
WORKLOAD, CLIENT = "primary_assistant", "bench"


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1 << 20)


def _open(store: str, target: str, page_size: int) -> Any:
    if store == "sqlite":
        from flywheel.logstore.sqlite import SQLiteLogStore

        return SQLiteLogStore(target, fetch_batch=page_size)
    from flywheel.config import ElasticsearchConfig
    from flywheel.logstore.elasticsearch import ElasticsearchLogStore

    return ElasticsearchLogStore(ElasticsearchConfig(hosts=[target], flavor="opensearch", index="bench-logs",
                                                     page_size=page_size, request_timeout_s=300))


def run_case(store: str, case: str, n: int, target: str, page_size: int) -> dict[str, Any]:
    with _open(store, target, page_size) as opened:
        before = _rss_mb()
        if case == "add":
            source = TimedSource(_generator()(n, CLIENT, 1))
            t0 = time.perf_counter()
            records = opened.add(source)
            seconds = time.perf_counter() - t0 - source.seconds
        else:
            t0 = time.perf_counter()
            records = sum(1 for _ in opened.extract(WORKLOAD, CLIENT))
            seconds = time.perf_counter() - t0
    return {"store": store, "case": case, "n": n, "records": records, "seconds": seconds,
            "per_s": records / seconds, "rss_before_mb": before, "peak_rss_mb": _peak_rss_mb()}


def _in_subprocess(store: str, case: str, n: int, target: str, page_size: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_logstores", "--store", store, "--case", case,
                          "--n", str(n), "--target", target, "--page-size", str(page_size)],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{store}/{case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000, help="extract page size (both stores)")
    parser.add_argument("--store", choices=STORES, help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.store:  # child process: one measurement, JSON on the last line
        print(json.dumps(run_case(args.store, args.case, args.n, args.target, args.page_size)))
        return 0

    import psutil
    from osmem_server import OsmemServer  # dev extra: the in-memory OpenSearch-compatible test server

    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-logstores-") as tmp:
        server = OsmemServer.start(japanese=False)
        try:
            targets = {"sqlite": str(Path(tmp) / "logs.sqlite"), "elasticsearch": server.url}
            for store in STORES:
                for case in CASES:
                    r = _in_subprocess(store, case, args.n, targets[store], args.page_size)
                    results.append(r)
                    print(f"{store:<14}{case:<8} N={args.n:,}: {r['records']:,} records in {r['seconds']:7.1f} s = "
                          f"{r['per_s']:>9,.0f}/s, RSS {r['rss_before_mb']:,.0f} -> peak {r['peak_rss_mb']:,.0f} MB",
                          flush=True)
            osmem_rss = psutil.Process(server.pid).memory_info().rss / (1 << 20)
        finally:
            server.close()
    print(f"\n{'store':<14}{'case':<8}{'records/s':>12}{'peak RSS MB':>13}{'RSS growth MB':>15}{'s':>8}")
    for r in results:
        print(f"{r['store']:<14}{r['case']:<8}{r['per_s']:>12,.0f}{r['peak_rss_mb']:>13,.0f}"
              f"{r['peak_rss_mb'] - r['rss_before_mb']:>15,.0f}{r['seconds']:>8.1f}")
    print(f"\nelasticsearch = the ES/OpenSearch store, flavor opensearch, on osmem-server (in-memory; its own RSS "
          f"after the run: {osmem_rss:,.0f} MB); extract page size {args.page_size}")
    print(f"cpu calibration: 10M-iteration Python loop = {cpu_calibration_s():.2f} s "
          "(~0.5 s on an idle modern x86 core); records/s exclude synthetic-record generation")
    print("load average (1/5/15 min) before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}; {} CPUs".format(
        *load_before, *os.getloadavg(), os.cpu_count()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
