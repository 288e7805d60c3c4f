"""In-context-learning (few-shot) example selection with a token budget, and ICL row rendering.

For each eval row, examples are chosen from the train rows:

* ``uniform_distribution``: round-robin over tool signatures (:func:`flywheel.records.tool_signature`:
  the sorted expected tool names of a train row, "(no call)" for none), so every tool gets its turn;
  which example of a signature and which signature goes first are seeded per eval record, so runs
  are reproducible.
* ``semantic_similarity``: cosine kNN on embeddings of the user queries (one numpy matmul per chunk
  of eval rows). ``relevance_ratio`` of ``max_examples`` are the most similar train rows; the rest
  maximise tool coverage: each goes to a signature not yet covered, most similar signature first,
  taking that signature's most similar row. Slots still free are filled by similarity.

Budget per eval row = min(context_length, max_context_length) - reserved_tokens - tokens of the eval
request (messages + tools); examples that do not fit are skipped. Tokens are
estimated as ceil(len(text) / 4) unless ``count_tokens`` is given. At most ``max_examples`` are
chosen; when fewer than ``min_examples`` fit, the row keeps what fits and the shortfall is counted
in ``report["below_min_examples"]`` (and logged) rather than overflowing the context.
An eval record never gets itself, nor any train row with the same user query as normalised by
:func:`flywheel.records.query_key` (the split's leakage check uses the same key).

Rendering: each example becomes a prior conversation turn - the example's user query, then the
assistant message it got (tool calls or reply text) - inserted right after the leading system
message. The reference blueprint appends an examples block to the system prompt instead; chat
templates (Qwen's among them) render the system text *before* the tool schemas, so that would make
every ICL prompt differ before the tools and defeat llama.cpp's prompt-prefix reuse, which is what
makes CPU evaluation affordable. As turns, the system+tools prefix is shared by every base and ICL
request of a candidate. The chosen train record ids are kept in ``row["icl_example_ids"]``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flywheel.config import ExampleSelection, ICLConfig
from flywheel.embeddings import Embedder, make_embedder
from flywheel.records import (
    call_arguments,
    call_name,
    expected_calls,
    expected_message,
    message_text,
    normalize_query,
    query_key,
    tool_signature,
    user_query,
)

log = logging.getLogger(__name__)

TokenCounter = Callable[[str], int]
EVAL_CHUNK_ROWS = 256
TOPK_BLOCK = 128


def estimate_tokens(text: str) -> int:
    """A cheap, deliberately pessimistic token estimate: one token per 4 characters."""
    return math.ceil(len(text) / 4)


def _compact_calls(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": call_name(c), "arguments": call_arguments(c)} for c in expected_calls(row)]


def _render(query: str, calls: list[dict[str, Any]], row: dict[str, Any]) -> str:
    answer = (f"Assistant tool calls: {json.dumps(calls, ensure_ascii=False)}" if calls
              else f"Assistant: {message_text(expected_message(row))}")
    return f"User: {query}\n{answer}"


def render_example(row: dict[str, Any]) -> str:
    """``User: <query>`` then ``Assistant tool calls: [{"name", "arguments"}]`` (or the reply text)."""
    return _render(user_query(row), _compact_calls(row), row)


def _request_text(row: dict[str, Any]) -> str:
    request = row.get("request") or {}
    return json.dumps(request.get("messages") or [], ensure_ascii=False) + json.dumps(request.get("tools") or [])


@dataclass
class _Pool:
    """Train rows usable as examples, sorted by tool signature so each signature is a contiguous slice."""

    rows: list[dict[str, Any]]
    record_ids: list[str | None]
    query_keys: list[str]
    queries: list[str]
    signatures: list[str]
    costs: np.ndarray
    group_starts: list[int]
    group_names: list[str]
    min_cost: int

    @classmethod
    def build(cls, train_rows: Sequence[dict[str, Any]], count_tokens: TokenCounter) -> _Pool:
        entries = []  # (signature, query, cost, row) for rows with a user query, sorted by signature (stable)
        for row in train_rows:
            query = user_query(row)
            if query.strip():
                calls = _compact_calls(row)
                # the cost includes the "Example N:" label and the blank line that separates examples
                cost = count_tokens(f"Example 10:\n{_render(query, calls, row)}\n\n")
                entries.append((tool_signature(row), query, cost, row))
        entries.sort(key=lambda entry: entry[0])
        signatures = [e[0] for e in entries]
        starts = [i for i in range(len(entries)) if i == 0 or signatures[i] != signatures[i - 1]]
        costs = np.array([e[2] for e in entries], dtype=np.int64)
        return cls(rows=[e[3] for e in entries], record_ids=[e[3].get("record_id") for e in entries],
                   query_keys=[normalize_query(e[1]) for e in entries], queries=[e[1] for e in entries],
                   signatures=signatures, costs=costs, group_starts=starts,
                   group_names=[signatures[s] for s in starts], min_cost=int(costs.min()) if len(costs) else 0)

    def group_range(self, group: int) -> range:
        end = self.group_starts[group + 1] if group + 1 < len(self.group_starts) else len(self.rows)
        return range(self.group_starts[group], end)


class _Picker:
    """The examples chosen for one eval row, enforcing exclusion, dedup and the token budget."""

    def __init__(self, pool: _Pool, eval_row: dict[str, Any], budget: int, limit: int) -> None:
        self.pool, self.budget, self.limit = pool, budget, limit
        self.own_id = eval_row.get("record_id")
        self.taken_queries = {query_key(eval_row)}
        self.chosen: list[int] = []

    @property
    def full(self) -> bool:
        """No more examples can be added: the limit is reached or not even the cheapest one fits."""
        return len(self.chosen) >= self.limit or self.budget < self.pool.min_cost

    def try_take(self, j: int) -> bool:
        pool = self.pool
        if self.full or pool.query_keys[j] in self.taken_queries:
            return False
        if self.own_id is not None and pool.record_ids[j] == self.own_id:
            return False
        if pool.costs[j] > self.budget:
            return False
        self.chosen.append(j)
        self.budget -= int(pool.costs[j])
        self.taken_queries.add(pool.query_keys[j])
        return True


def _budget(row: dict[str, Any], config: ICLConfig, context_length: int, count_tokens: TokenCounter) -> int:
    window = min(context_length, config.max_context_length)
    return window - config.reserved_tokens - count_tokens(_request_text(row))


def _select_uniform(pool: _Pool, pickers: list[_Picker], keys: list[str], seed: int) -> None:
    groups = [list(pool.group_range(g)) for g in range(len(pool.group_starts))]
    shuffler = random.Random(seed)
    for members in groups:
        shuffler.shuffle(members)
    max_tries_per_turn = 8
    for picker, key in zip(pickers, keys):
        rng = random.Random(f"{seed}:{key}")
        first = rng.randrange(len(groups)) if groups else 0
        order = [groups[(first + k) % len(groups)] for k in range(len(groups))]
        cursors = [rng.randrange(len(members)) for members in order]
        scanned = [0] * len(order)
        progressed = True
        while not picker.full and progressed:
            progressed = False
            for g, members in enumerate(order):
                tries = 0
                while scanned[g] < len(members) and tries < max_tries_per_turn and not picker.full:
                    j = members[(cursors[g] + scanned[g]) % len(members)]
                    scanned[g] += 1
                    tries += 1
                    if picker.try_take(j):
                        progressed = True
                        break
                progressed = progressed or scanned[g] < len(members)
                if picker.full:
                    break


def top_k_columns(sims: np.ndarray, k: int, block: int = TOPK_BLOCK) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row, unordered.

    Two-level search: the top k values of a row lie in the (at most) k column blocks with the
    largest block maxima, so only those k × block candidates are partitioned. About 5× less work
    than a full-row argpartition for 10k columns.
    """
    rows, n = sims.shape
    if k >= n:
        return np.tile(np.arange(n), (rows, 1))
    n_blocks = -(-n // block)
    if n_blocks <= 2 * k:
        return np.argpartition(sims, n - k, axis=1)[:, n - k:]
    padded = sims
    if n % block:
        padded = np.full((rows, n_blocks * block), -np.inf, dtype=sims.dtype)
        padded[:, :n] = sims
    block_max = padded.reshape(rows, n_blocks, block).max(axis=2)
    best_blocks = np.argpartition(block_max, n_blocks - k, axis=1)[:, n_blocks - k:]
    columns = (best_blocks[:, :, None] * block + np.arange(block)).reshape(rows, -1)
    values = np.take_along_axis(padded, columns, axis=1)
    picked = np.argpartition(values, values.shape[1] - k, axis=1)[:, values.shape[1] - k:]
    return np.take_along_axis(columns, picked, axis=1)


def _select_semantic(pool: _Pool, pickers: list[_Picker], eval_rows: Sequence[dict[str, Any]],
                     config: ICLConfig, embedder: Embedder) -> None:
    n_train = len(pool.rows)
    train_vectors = np.asarray(embedder.embed(pool.queries), dtype=np.float32)
    eval_vectors = np.asarray(embedder.embed([user_query(row) for row in eval_rows]), dtype=np.float32)
    padding = -n_train % TOPK_BLOCK  # zero rows so top_k_columns needs no per-chunk copy; masked below
    if padding and n_train > TOPK_BLOCK:
        train_vectors = np.vstack([train_vectors, np.zeros((padding, train_vectors.shape[1]), np.float32)])
    n_relevant = round(config.similarity_config.relevance_ratio * config.max_examples)
    shortlist = min(n_train, config.max_examples * 4 + 8)
    for start in range(0, len(eval_rows), EVAL_CHUNK_ROWS):
        padded_sims = eval_vectors[start:start + EVAL_CHUNK_ROWS] @ train_vectors.T
        padded_sims[:, n_train:] = -np.inf
        top = top_k_columns(padded_sims, shortlist)
        sims = padded_sims[:, :n_train]
        # vectorised per chunk; the per-row loop below only walks short Python lists
        top_sims = np.take_along_axis(padded_sims, top, axis=1)
        ranked_rows = np.take_along_axis(top, np.argsort(-top_sims, axis=1, kind="stable"), axis=1).tolist()
        group_best = np.maximum.reduceat(sims, pool.group_starts, axis=1)
        group_orders = np.argsort(-group_best, axis=1, kind="stable").tolist()
        for r, (ranked, group_order) in enumerate(zip(ranked_rows, group_orders)):
            picker, row_sims = pickers[start + r], sims[r]
            _take_in_order(picker, ranked, row_sims, stop_at=n_relevant)
            _cover_signatures(picker, pool, row_sims, group_order)
            _take_in_order(picker, ranked, row_sims, stop_at=picker.limit)


def _take_in_order(picker: _Picker, ranked: list[int], row_sims: np.ndarray, stop_at: int) -> None:
    """Take candidates by descending similarity until ``stop_at`` are chosen; widen to all rows if needed."""
    for j in ranked:
        if len(picker.chosen) >= stop_at or picker.full:
            return
        picker.try_take(j)
    if len(picker.chosen) < stop_at and not picker.full and len(ranked) < len(row_sims):
        for j in np.argsort(-row_sims, kind="stable"):
            if len(picker.chosen) >= stop_at or picker.full:
                return
            picker.try_take(int(j))


def _cover_signatures(picker: _Picker, pool: _Pool, row_sims: np.ndarray, group_order: list[int]) -> None:
    """Fill free slots with uncovered signatures (``group_order``: most similar signature first),
    taking each signature's most similar eligible row."""
    covered = {pool.signatures[j] for j in picker.chosen}
    for g in group_order:
        if picker.full:
            return
        if pool.group_names[g] in covered:
            continue
        group = pool.group_range(int(g))
        group_sims = row_sims[group.start:group.stop]
        if picker.try_take(group.start + int(np.argmax(group_sims))):  # the usual case: best row is eligible
            covered.add(pool.group_names[g])
            continue
        for j in np.argsort(-group_sims, kind="stable"):
            if picker.try_take(group.start + int(j)):
                covered.add(pool.group_names[g])
                break


def select_examples(eval_rows: Sequence[dict[str, Any]], train_rows: Sequence[dict[str, Any]], config: ICLConfig,
                    *, context_length: int, embedder: Embedder | None = None,
                    count_tokens: TokenCounter | None = None, seed: int = 42,
                    report: dict[str, int] | None = None) -> list[list[dict[str, Any]]]:
    """The train rows to show as examples for each eval row (same order as ``eval_rows``).

    ``report`` (optional) receives counts: ``below_min_examples``, ``no_examples``, ``examples``.
    """
    count_tokens = count_tokens or estimate_tokens
    keys = [str(row.get("record_id") or i) for i, row in enumerate(eval_rows)]
    pool = _Pool.build(train_rows, count_tokens)
    pickers = [_Picker(pool, row, _budget(row, config, context_length, count_tokens), config.max_examples)
               for row in eval_rows]
    if pool.rows and config.max_examples > 0 and eval_rows:
        if config.example_selection == ExampleSelection.semantic_similarity:
            embedder = embedder or make_embedder(config.similarity_config.embedding_nim_config)
            _select_semantic(pool, pickers, eval_rows, config, embedder)
        else:
            _select_uniform(pool, pickers, keys, seed)
    below_min = sum(1 for p in pickers if len(p.chosen) < config.min_examples)
    counts = {"below_min_examples": below_min, "no_examples": sum(1 for p in pickers if not p.chosen),
              "examples": sum(len(p.chosen) for p in pickers)}
    if below_min:
        log.warning("ICL: %d of %d eval rows got fewer than min_examples=%d examples (token budget or pool size)",
                    below_min, len(eval_rows), config.min_examples)
    if report is not None:
        report.update(counts)
    return [[pool.rows[j] for j in picker.chosen] for picker in pickers]


def example_turns(example: dict[str, Any]) -> list[dict[str, Any]]:
    """One example as a user turn followed by the assistant message the production model gave."""
    answer = expected_message(example)
    calls = expected_calls(example)
    assistant: dict[str, Any] = {"role": "assistant", "content": None if calls else (answer.get("content") or "")}
    if calls:
        assistant["tool_calls"] = copy.deepcopy(calls)
    return [{"role": "user", "content": user_query(example)}, assistant]


def inject_examples(row: dict[str, Any], examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A copy of ``row`` with ``examples`` as prior turns right after its leading system message."""
    out = copy.deepcopy(row)
    out["icl_example_ids"] = [e.get("record_id") for e in examples]
    messages = out.setdefault("request", {}).setdefault("messages", [])
    at = 1 if messages and messages[0].get("role") == "system" else 0
    turns = [turn for example in examples for turn in example_turns(example)]
    messages[at:at] = turns
    return out


def build_icl_rows(eval_rows: Sequence[dict[str, Any]], train_rows: Sequence[dict[str, Any]], config: ICLConfig,
                   context_length: int, embedder: Embedder | None = None, *,
                   count_tokens: TokenCounter | None = None, seed: int = 42,
                   report: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Eval rows with few-shot examples injected (see the module docstring for the format)."""
    chosen = select_examples(eval_rows, train_rows, config, context_length=context_length, embedder=embedder,
                             count_tokens=count_tokens, seed=seed, report=report)
    return [inject_examples(row, examples) for row, examples in zip(eval_rows, chosen)]
