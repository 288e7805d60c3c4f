"""Seeded eval / train / val split of retrieval rows with no query leakage and no shared positives.

Rows are grouped first: two rows belong to one group when they ask the same (normalised) query or
rely on a common passage (union-find over both keys). Whole groups go to one split, so no query
and no positive passage appears in two splits: a fine-tuned model cannot score on eval by having
seen the answer passage as a training positive. Groups are shuffled with the seed; eval takes
groups until it holds ``eval_size`` rows, val takes ``val_ratio`` of the rest, train the remainder.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.config import DataSplitConfig
from flywheel.retrieval.records import query_key
from flywheel.splits import SPLITS, InsufficientData


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:  # path compression
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class RetrievalSplits:
    splits: dict[str, list[dict[str, Any]]]
    counts: dict[str, Any] = field(default_factory=dict)

    def record_ids(self) -> dict[str, list[str]]:
        return {name: [row["record_id"] for row in rows] for name, rows in self.splits.items()}


def groups_of(rows: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Row indexes grouped by shared query or shared positive, each group in input order; groups
    ordered by their first row."""
    uf = _UnionFind()
    for row in rows:
        anchor = "q:" + query_key(row)
        for pid in row["positive_ids"]:
            uf.union(anchor, "p:" + pid)
        uf.find(anchor)
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(uf.find("q:" + query_key(row)), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def split_retrieval_rows(rows: Sequence[dict[str, Any]], config: DataSplitConfig, *,
                         curation_counts: dict[str, Any] | None = None) -> RetrievalSplits:
    """Split curated rows into eval / train / val. Deterministic for a seed; rows keep input order."""
    if len(rows) < config.min_total_records:
        raise InsufficientData(len(rows), config.min_total_records, curation_counts)
    groups = groups_of(rows)
    order = list(range(len(groups)))
    random.Random(config.random_seed).shuffle(order)
    assignment: dict[int, str] = {}
    eval_rows, eval_groups = 0, 0
    rest: list[int] = []
    for g in order:
        # Eval never takes the last group: training needs at least one.
        if eval_rows < config.eval_size and eval_groups < len(groups) - 1:
            eval_groups += 1
            for i in groups[g]:
                assignment[i] = "eval"
            eval_rows += len(groups[g])
        else:
            rest.append(g)
    remaining = sum(len(groups[g]) for g in rest)
    val_target = round(config.val_ratio * remaining)
    val_rows = 0
    for g in rest:
        name = "val" if val_rows < val_target else "train"
        if name == "val":
            val_rows += len(groups[g])
        for i in groups[g]:
            assignment[i] = name
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for i, row in enumerate(rows):
        splits[assignment[i]].append(row)
    counts = {"usable": len(rows), "groups": len(groups), "largest_group": max(map(len, groups)),
              **{name: len(splits[name]) for name in SPLITS}}
    return RetrievalSplits(splits=splits, counts=counts)


def shared_across_splits(splits: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """Queries and positive ids that occur in more than one split (empty sets for a clean split)."""
    seen_q: dict[str, str] = {}
    seen_p: dict[str, str] = {}
    shared: dict[str, set[str]] = {"queries": set(), "positives": set()}
    for name, split_rows in splits.items():
        for row in split_rows:
            q = query_key(row)
            if seen_q.setdefault(q, name) != name:
                shared["queries"].add(q)
            for pid in row["positive_ids"]:
                if seen_p.setdefault(pid, name) != name:
                    shared["positives"].add(pid)
    return shared
