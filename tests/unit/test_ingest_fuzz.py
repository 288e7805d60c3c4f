"""Hypothesis fuzz of ingest: >= 10,000 malformed or hostile records (lone surrogates, huge strings, deep
nesting, wrong types, NaN, huge integers, broken JSON lines). No crash; every record is stored, reported
as a duplicate, or rejected with its position and a reason; resending changes nothing."""

from __future__ import annotations

import json
import random
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_records import record

from flywheel.ingest import ingest_records, load_jsonl
from flywheel.logstore.sqlite import SQLiteLogStore

MIN_RECORDS = 10_000

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
any_text = st.text(st.characters(codec=None), max_size=40)  # everything but surrogates, controls included


def _nested(depth: int, leaf: object = 1) -> object:
    value: object = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


hostile_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True), any_text,
    st.tuples(any_text, surrogates, any_text).map("".join),
    st.integers(10_000, 100_000).map(lambda n: "A" * n),  # huge strings
)
hostile_value = st.one_of(
    hostile_scalar,
    st.integers(20, 1_500).map(_nested),  # deep nesting, past MAX_DEPTH and past orjson's 1024 limit
    st.lists(hostile_scalar, max_size=4),
    st.dictionaries(any_text, hostile_scalar, max_size=4),
)
PATHS = [
    ("timestamp",), ("workload_id",), ("client_id",), ("request",), ("response",), ("request", "messages"),
    ("request", "messages", 0), ("request", "messages", 0, "content"), ("request", "messages", 0, "role"),
    ("request", "tools"), ("request", "tools", 0, "function", "name"), ("response", "choices"),
    ("response", "choices", 0, "message"), ("response", "choices", 0, "message", "tool_calls"),
    ("response", "choices", 0, "message", "tool_calls", 0, "function", "arguments"), ("unexpected",),
]


def _set(target: dict, path: tuple, value: object) -> None:
    node: object = target
    for part in path[:-1]:
        try:
            node = node[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return
    try:
        node[path[-1]] = value  # type: ignore[index]
    except (IndexError, TypeError):
        pass


@st.composite
def hostile_record(draw) -> object:
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "mutated", "garbage"]))
    if kind == "garbage":
        return draw(hostile_value)
    rec = record(ts=draw(st.floats(0, 2e9)), query=draw(st.one_of(any_text, st.just("q"))))
    if kind == "mutated":
        for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3)):
            _set(rec, path, draw(hostile_value))  # drawn fresh each time: no sharing between records
    return rec


@st.composite
def hostile_batch(draw, size: int) -> list[object]:
    """``size`` records built from a few hypothesis-chosen hostile values and records.

    Hypothesis picks the values (and shrinks them on failure); a seeded RNG combines them into many
    records, because drawing every record through hypothesis costs ~5 ms each.
    """
    values = draw(st.lists(hostile_value, min_size=4, max_size=12))
    drawn = draw(st.lists(hostile_record(), min_size=2, max_size=8))
    rng = random.Random(draw(st.integers(0, 2**32)))
    out: list[object] = list(drawn)
    while len(out) < size:
        kind = rng.random()
        if kind < 0.15:
            out.append(rng.choice(values))
        elif kind < 0.25:
            out.append(rng.choice(drawn))  # a copy of an earlier record in the same request
        else:
            rec = record(ts=rng.uniform(0, 2e9), query=f"q{rng.random()}")
            if kind > 0.35:
                for _ in range(rng.randint(1, 3)):
                    _set(rec, rng.choice(PATHS), rng.choice(values))
            out.append(rec)
    return out


def _dumps(value: object, **kwargs: object) -> str:
    try:
        return json.dumps(value, default=str, **kwargs)
    except RecursionError:  # deeper than json can write: send the opening brackets
        return "[" * 2000


broken_line = st.one_of(
    hostile_record().map(lambda r: _dumps(r, ensure_ascii=False)[:-1]),  # truncated
    any_text, st.just("{"), st.just('{"timestamp": NaN'), st.integers(20, 5_000).map(lambda d: "[" * d),
    hostile_record().map(_dumps),
)


def _reject_constant(name: str) -> None:
    raise AssertionError(f"stored record holds {name}, which is not JSON")


def check_accounting(report, n: int, position: str) -> None:
    rejected = [getattr(e, position) for e in report.errors]
    assert all(e.reason for e in report.errors)
    assert report.loaded + report.duplicates + report.skipped == n
    assert len(rejected) == report.skipped == sum(report.reasons.values())
    assert not set(rejected) & set(report.duplicate_positions)
    assert len(set(rejected)) == len(rejected)


def test_fuzz_record_batches(tmp_path):
    seen = {"records": 0}
    with SQLiteLogStore(tmp_path / "fuzz.sqlite") as store:

        @settings(max_examples=100, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(records=hostile_batch(110),
               override=st.sampled_from([None, "wl-fuzz"]))
        def run(records, override):
            before = store.count()
            report = ingest_records(records, store, workload_id=override, client_id=override)
            check_accounting(report, len(records), "index")
            assert store.count() == before + report.loaded
            again = ingest_records(records, store, workload_id=override, client_id=override)
            assert (again.loaded, again.duplicates, again.skipped) == (0, report.loaded + report.duplicates,
                                                                       report.skipped)
            assert store.count() == before + report.loaded
            seen["records"] += len(records)

        run()
        # every stored row is strict JSON (no NaN/Infinity) that every reader can parse, and the store's
        # own reader gives the records back
        assert list(store.extract("wl-fuzz", "wl-fuzz", limit=50))
    rows = sqlite3.connect(tmp_path / "fuzz.sqlite").execute("SELECT CAST(record AS BLOB) FROM logs").fetchall()
    assert rows
    for (data,) in rows:
        json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    assert seen["records"] >= MIN_RECORDS, seen


def test_fuzz_jsonl_lines(tmp_path):
    seen = {"lines": 0}
    with SQLiteLogStore(tmp_path / "fuzz.sqlite") as store:

        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(lines=st.lists(broken_line, min_size=20, max_size=60))
        def run(lines):
            clean = [line.replace("\n", " ").replace("\r", " ") for line in lines]
            non_blank = [i + 1 for i, line in enumerate(clean) if line.strip()]
            report = load_jsonl([line + "\n" for line in clean], store, batch_size=16)
            check_accounting(report, len(non_blank), "line")
            assert set(e.line for e in report.errors) <= set(non_blank)
            seen["lines"] += len(lines)

        run()
    assert seen["lines"] >= 800, seen
