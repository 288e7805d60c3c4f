"""Append-only JSONL rows keyed by ``record_id``: what makes an evaluation resumable (predictions, judge
verdicts) without paying twice for a record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonlCache:
    """Append-only JSONL rows keyed by ``record_id``; reading tolerates a torn last line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None

    def load(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return rows
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash mid-write
                if isinstance(row, dict) and "record_id" in row:
                    rows[str(row["record_id"])] = row
        return rows

    def append(self, row: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            needs_newline = (self.path.exists() and self.path.stat().st_size > 0
                             and not self.path.read_bytes().endswith(b"\n"))
            self._file = self.path.open("a", encoding="utf-8")
            if needs_newline:
                self._file.write("\n")
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
