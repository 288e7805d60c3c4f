"""Data-path benchmark: records/s and peak RSS of curation, split and SQLite extraction at 100k and 1M records.

    python -m bench.bench_data_path [--sizes 100000 1000000] [--limit 10000]

Each (case, size) runs in its own subprocess so peak RSS is per case. Cases:

- ``curate``  streaming curation of N synthetic records (generation time excluded), rows not kept;
- ``curate_split`` curation + split of the first ``limit`` records (what one run does: extract honours the limit);
- ``add``     SQLite: bulk add N records (generation excluded) into a fresh store in a temporary directory
              (~4.4 KB each: ~4.4 GB at 1M);
- ``extract`` SQLite: stream all N back from that store (json decode included);
- ``prepare`` SQLite extract(limit) + prepare_datasets on that store: the data activity's path.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CASES = ("curate", "curate_split", "add", "extract", "prepare")


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_samples", ROOT / "data" / "generate_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class TimedSource:
    """Wraps a generator and accumulates the time spent producing items, to subtract it."""

    def __init__(self, it: Iterator[dict]) -> None:
        self.it, self.seconds = it, 0.0

    def __iter__(self) -> Iterator[dict]:
        clock = time.perf_counter
        while True:
            t0 = clock()
            try:
                item = next(self.it)
            except StopIteration:
                self.seconds += clock() - t0
                return
            self.seconds += clock() - t0
            yield item


def _case_curate(n: int, limit: int, db: str) -> dict[str, Any]:
    from flywheel.config import CurationConfig
    from flywheel.curation import iter_curated, new_counts

    source = TimedSource(_generator()(n, "bench", 1))
    counts = new_counts()
    t0 = time.perf_counter()
    for _ in iter_curated(source, CurationConfig(), counts):
        pass
    seconds = time.perf_counter() - t0 - source.seconds
    return {"records": n, "seconds": seconds, "kept": counts["kept"]}


def _case_curate_split(n: int, limit: int, db: str) -> dict[str, Any]:
    from itertools import islice

    from flywheel.config import CurationConfig, DataSplitConfig
    from flywheel.prepare import prepare_datasets

    records = list(islice(_generator()(n, "bench", 1), limit))  # generation is outside the timing
    t0 = time.perf_counter()
    prepared = prepare_datasets(records, DataSplitConfig(limit=limit), CurationConfig(), inputs={"n": n})
    seconds = time.perf_counter() - t0
    return {"records": len(records), "seconds": seconds, "kept": prepared.counts["kept"]}


def _case_add(n: int, limit: int, db: str) -> dict[str, Any]:
    from flywheel.logstore.sqlite import SQLiteLogStore

    with SQLiteLogStore(db) as store:
        source = TimedSource(_generator()(n, "bench", 1))
        t0 = time.perf_counter()
        added = store.add(source)
        seconds = time.perf_counter() - t0 - source.seconds
    return {"records": added, "seconds": seconds}


def _case_extract(n: int, limit: int, db: str) -> dict[str, Any]:
    from flywheel.logstore.sqlite import SQLiteLogStore

    with SQLiteLogStore(db) as store:
        t0 = time.perf_counter()
        count = sum(1 for _ in store.extract("primary_assistant", "bench"))
        seconds = time.perf_counter() - t0
    return {"records": count, "seconds": seconds}


def _case_prepare(n: int, limit: int, db: str) -> dict[str, Any]:
    from flywheel.config import CurationConfig, DataSplitConfig
    from flywheel.logstore.sqlite import SQLiteLogStore
    from flywheel.prepare import prepare_datasets

    with SQLiteLogStore(db) as store:
        t0 = time.perf_counter()
        records = store.extract("primary_assistant", "bench", limit=limit)
        prepared = prepare_datasets(records, DataSplitConfig(limit=limit), CurationConfig(), inputs={"n": n})
        seconds = time.perf_counter() - t0
    return {"records": prepared.num_records, "seconds": seconds, "kept": prepared.counts["kept"]}


def run_case(case: str, n: int, limit: int, db: str) -> dict[str, Any]:
    result = globals()[f"_case_{case}"](n, limit, db)
    result.update(case=case, n=n, per_s=result["records"] / result["seconds"], peak_rss_mb=_peak_rss_mb())
    return result


def _in_subprocess(case: str, n: int, limit: int, db: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_data_path", "--case", case, "--n", str(n),
                          "--limit", str(limit), "--db", db], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(results: dict[tuple[str, int], dict[str, Any]], sizes: list[int], cases: list[str]) -> str:
    header = f"{'case':<13}" + "".join(f"{f'N={n:,}':>34}" for n in sizes)
    lines = [header, f"{'':<13}" + "".join(f"{'records/s':>14}{'peak RSS MB':>14}{'s':>6}" for _ in sizes)]
    for case in cases:
        cells = []
        for n in sizes:
            r = results[(case, n)]
            cells.append(f"{r['per_s']:>14,.0f}{r['peak_rss_mb']:>14,.0f}{r['seconds']:>6.1f}")
        lines.append(f"{case:<13}" + "".join(cells))
    return "\n".join(lines)


def cpu_calibration_s() -> float:
    """Seconds for a 10M-iteration Python loop: lets readers scale figures taken on a busy or slow machine."""
    t0 = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t0


def machine_context(load_before: tuple[float, float, float]) -> str:
    """The lines every data-path benchmark ends with, so runs on different machines can be compared."""
    calibration = (f"cpu calibration: 10M-iteration Python loop = {cpu_calibration_s():.2f} s "
                   "(~0.5 s on an idle modern x86 core); records/s exclude synthetic-record generation")
    load = "load average (1/5/15 min) before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}; {} CPUs".format(
        *load_before, *os.getloadavg(), os.cpu_count())
    return f"{calibration}\n{load}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--limit", type=int, default=10_000, help="data_split_config.limit for split/prepare")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:  # child process: one measurement, JSON on the last line
        print(json.dumps(run_case(args.case, args.n, args.limit, args.db)))
        return 0
    cases = [c for c in CASES if c in args.cases]
    if {"extract", "prepare"} & set(cases) and "add" not in cases:
        cases.insert(cases.index("extract") if "extract" in cases else cases.index("prepare"), "add")
    results = {}
    load_before = os.getloadavg()
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
            db = str(Path(tmp) / "logs.sqlite")
            for case in cases:
                results[(case, n)] = r = _in_subprocess(case, n, args.limit, db)
                print(f"{case:<13} N={n:>9,}: {r['records']:>9,} records in {r['seconds']:7.1f} s = "
                      f"{r['per_s']:>9,.0f}/s, peak RSS {r['peak_rss_mb']:,.0f} MB", flush=True)
    print()
    print(_table(results, args.sizes, cases))
    print()
    print(machine_context(load_before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
