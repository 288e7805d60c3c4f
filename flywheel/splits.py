"""Seeded, stratified eval / train / val split with a leakage check and a manifest hash.

Strata are tool signatures (:func:`flywheel.records.tool_signature`: sorted tool names joined by '|';
"(no call)" = no tool call). Both eval and val
are stratified (the reference never stratified val). Quotas are proportional to stratum size
(largest remainder, ties broken by stratum name), and each stratum keeps at least one record for
training where it has two or more. Rows keep their input order inside each split.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.config import DataSplitConfig
from flywheel.records import query_key, tool_signature

SPLITS = ("eval", "train", "val")


class InsufficientData(ValueError):
    """Too few usable records to build datasets; the message states the counts."""

    def __init__(self, usable: int, required: int, counts: dict[str, Any] | None = None) -> None:
        self.usable = usable
        self.required = required
        self.counts = dict(counts or {})
        detail = ", ".join(f"{k}={v}" for k, v in self.counts.items() if not isinstance(v, dict) and k != "kept")
        message = f"only {usable} usable records after curation; min_total_records is {required}"
        super().__init__(f"{message} ({detail})" if detail else message)


@dataclass
class SplitResult:
    splits: dict[str, list[dict[str, Any]]]
    counts: dict[str, Any] = field(default_factory=dict)
    strata: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> stratum -> rows

    def record_ids(self) -> dict[str, list[str]]:
        return {name: [row["record_id"] for row in rows] for name, rows in self.splits.items()}


def stratum_of(row: dict[str, Any]) -> str:
    return tool_signature(row)


def _allocate(sizes: dict[str, int], total: int, caps: dict[str, int]) -> dict[str, int]:
    """Split ``total`` over strata proportionally to ``sizes`` (largest remainder), within ``caps``."""
    population = sum(sizes.values())
    total = min(total, sum(caps.values()))
    if population == 0 or total <= 0:
        return {k: 0 for k in sizes}
    exact = {k: total * n / population for k, n in sizes.items()}
    quota = {k: min(int(exact[k]), caps[k]) for k in sizes}
    # Hand out what is left, largest fractional share first; repeat while caps leave room.
    while sum(quota.values()) < total:
        open_strata = sorted((k for k in sizes if quota[k] < caps[k]), key=lambda k: (-(exact[k] - quota[k]), k))
        if not open_strata:
            break
        for k in open_strata[: total - sum(quota.values())]:
            quota[k] += 1
    return quota


def _groups(strata: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, stratum in enumerate(strata):
        groups.setdefault(stratum, []).append(i)
    return dict(sorted(groups.items()))


def split_records(rows: Sequence[dict[str, Any]], config: DataSplitConfig, *,
                  curation_counts: dict[str, Any] | None = None) -> SplitResult:
    """Split curated rows (each with ``record_id``) into eval / train / val. Deterministic for a seed."""
    if len(rows) < config.min_total_records:
        raise InsufficientData(len(rows), config.min_total_records, curation_counts)
    rng = random.Random(config.random_seed)
    strata_of = [stratum_of(row) for row in rows] if config.stratify else [""] * len(rows)
    groups = _groups(strata_of)
    for members in groups.values():
        rng.shuffle(members)
    sizes = {k: len(v) for k, v in groups.items()}

    keep_one = {k: n - 1 if n >= 2 else 0 for k, n in sizes.items()}
    eval_quota = _allocate(sizes, config.eval_size, keep_one)
    remaining = {k: sizes[k] - eval_quota[k] for k in sizes}
    val_total = round(config.val_ratio * sum(remaining.values()))
    val_quota = _allocate(remaining, val_total, {k: n - 1 if n >= 2 else 0 for k, n in remaining.items()})

    assignment: dict[int, str] = {}
    for k, members in groups.items():
        for pos, index in enumerate(members):
            assignment[index] = ("eval" if pos < eval_quota[k]
                                 else "val" if pos < eval_quota[k] + val_quota[k] else "train")

    eval_queries = {query_key(rows[i]) for i, s in assignment.items() if s == "eval"}
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    strata: dict[str, dict[str, int]] = {name: {} for name in SPLITS}
    leakage_removed = 0
    for i, row in enumerate(rows):
        name = assignment[i]
        if name != "eval" and query_key(row) in eval_queries:
            leakage_removed += 1  # the same question is in eval: training on it would inflate scores
            continue
        splits[name].append(row)
        stratum = strata_of[i]
        strata[name][stratum] = strata[name].get(stratum, 0) + 1

    counts = {"usable": len(rows), "eval": len(splits["eval"]), "train": len(splits["train"]),
              "val": len(splits["val"]), "leakage_removed": leakage_removed, "strata": len(groups)}
    return SplitResult(splits=splits, counts=counts, strata=strata)


def manifest_hash(inputs: dict[str, Any], config: dict[str, Any], record_ids: dict[str, list[str]]) -> str:
    """sha256 over the run's inputs (workload, client, window, ...), split config and split membership."""
    payload = {"inputs": inputs, "config": config, "splits": {k: list(v) for k, v in sorted(record_ids.items())}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
