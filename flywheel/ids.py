"""Id shapes and the run key: ONE pure module shared by the API, the CLI, ingest and the workflows.

Workload, client and model ids end up in Temporal workflow ids, file and dataset names and remote
(NeMo) entity names, so they are checked where they enter (API bodies and parameters, CLI options,
ingested records, the config's NIM list) with the patterns below, and refused with a clear message.

Workflow ids themselves are not safe names: a Schedule appends its action time
(``...-sched-2026-12-02T01:03:04Z``) and model names carry ``/``. :func:`run_key` turns any id into
the one name used for everything a run creates, local or remote.
"""

from __future__ import annotations

import hashlib
import re

WORKLOAD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
CLIENT_ID_PATTERN = WORKLOAD_ID_PATTERN
# Candidate names: NIM-style "meta/llama-3.2-1b-instruct", customised "customized-x@<job>", tags "x:latest".
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,255}$"
# 24 hex (API-started) or "sched-<timestamp>" (schedule-started) job ids.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
SCHEDULE_PREFIX = "flywheel-schedule-"
SCHEDULE_ID_PATTERN = rf"^{SCHEDULE_PREFIX}[A-Za-z0-9_.-]{{1,260}}$"
CONFIG_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

PATTERNS = {
    "workload_id": WORKLOAD_ID_PATTERN,
    "client_id": CLIENT_ID_PATTERN,
    "model_name": MODEL_NAME_PATTERN,
    "job_id": JOB_ID_PATTERN,
}

# A run key is safe for the local dataset store, file names, Hugging Face repo ids and NeMo entity names.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_.-]+")
RUN_KEY_MAX = 96  # leaves room for suffixes ("-customized", "-icl") under NeMo's name limits
_HASH_LEN = 10


class InvalidId(ValueError):
    """An id that does not match its pattern; the message names the field and the allowed shape."""


def check_id(kind: str, value: object) -> str:
    """``value`` if it is a valid ``kind`` (``workload_id``, ``client_id``, ``model_name``, ``job_id``)."""
    pattern = PATTERNS[kind]
    if not isinstance(value, str) or re.fullmatch(pattern, value) is None:
        raise InvalidId(f"invalid {kind} {str(value)[:80]!r}: must match {pattern} "
                        "(letters, digits and . _ - ; start with a letter or digit)")
    return value


def is_safe_key(name: str) -> bool:
    """A name usable as it is wherever a run key is (dataset names, file names, NeMo entity names)."""
    return bool(_SAFE.fullmatch(name))


def short_hash(text: str, length: int = _HASH_LEN) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_key(any_id: str) -> str:
    """The name everything a run creates is stored under, derived from a workflow id.

    A safe, short id is its own key (so names stay readable and stable across retries). Any other id is
    sanitised (unsafe runs of characters → ``-``), cut to fit, and suffixed with a hash of the ORIGINAL
    id, so two ids that sanitise alike (``a:b`` / ``a-b``) never share a key.
    """
    if _SAFE.fullmatch(any_id) and len(any_id) <= RUN_KEY_MAX:
        return any_id
    cleaned = _UNSAFE_RUN.sub("-", any_id).strip("-._") or "run"
    cleaned = cleaned[: RUN_KEY_MAX - _HASH_LEN - 1].rstrip("-._")
    return f"{cleaned}-{short_hash(any_id)}"


def model_slug(model_name: str) -> str:
    """A model name as a workflow-id/name segment: ``/`` and other separators become ``-``, plus a hash of
    the real name whenever that changed it (``org/m`` and ``org-m`` must not share a child workflow id)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model_name)
    return safe if safe == model_name else f"{safe}-{short_hash(model_name, 8)}"
