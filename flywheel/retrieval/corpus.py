"""The corpus snapshot a run evaluates against: every passage the logs saw, plus an optional export.

Retrieval logs only carry the passages the production retriever returned; the pipeline's full
corpus (an export of the index, ``{id, text}`` per line) may be added, and then wins for the ids it
has (it is the current text). Among logged passages, the newest record's text wins; ids whose text
changed over the window are counted (``text_changed``). The snapshot is sorted by id and has a
sha256 over its content, so two runs on the same data evaluate against the same corpus.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.curation import canonical_bytes, redact_text


@dataclass
class Corpus:
    ids: list[str]
    texts: list[str]
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = {pid: i for i, pid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_bytes([self.ids, self.texts])).hexdigest()

    def rows(self) -> list[dict[str, str]]:
        return [{"id": i, "text": t} for i, t in zip(self.ids, self.texts)]

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]]) -> Corpus:
        """A stored snapshot (``{id, text}`` rows) back into a Corpus."""
        pairs = sorted((str(r["id"]), str(r["text"])) for r in rows)
        return cls([p[0] for p in pairs], [p[1] for p in pairs], {"passages": len(pairs)})


def read_passages(path: str | Path) -> list[dict[str, str]]:
    """A corpus export: JSON lines of ``{id, text}``. Raises ValueError naming the first bad line."""
    passages = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
            if not (isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("text"), str)):
                raise ValueError(f"{path}:{number}: expected an object with string id and text")
            passages.append({"id": item["id"], "text": item["text"]})
    return passages


def build_corpus(rows: Sequence[dict[str, Any]], extra_passages: Iterable[dict[str, str]] = (), *,
                 redact_pii: bool = False) -> Corpus:
    """Snapshot of the passages in curated ``rows`` (newest text wins) and ``extra_passages`` (which win).

    ``redact_pii`` redacts the export's texts the way curation redacted the logged ones.
    """
    texts: dict[str, str] = {}
    changed: set[str] = set()
    for row in sorted(rows, key=lambda r: r["timestamp"]):
        for passage in row["results"]:
            pid, text = passage["id"], passage["text"]
            if pid in texts and texts[pid] != text:
                changed.add(pid)
            texts[pid] = text
    logged = len(texts)
    exported = 0
    for passage in extra_passages:
        texts[passage["id"]] = redact_text(passage["text"]) if redact_pii else passage["text"]
        exported += 1
    ids = sorted(texts)
    counts = {"passages": len(ids), "from_logs": logged, "from_export": exported, "text_changed": len(changed)}
    return Corpus(ids, [texts[i] for i in ids], counts)
