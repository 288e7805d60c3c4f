"""Datasets on NeMo Microservices v1: files in the Datastore (HF API) + registration at ``/v1/datasets``.

One HF dataset repo per run (``{namespace}/{run_key}``) with the Customizer's folder layout:
``training/train.jsonl``, ``validation/val.jsonl``, ``testing/eval.jsonl``. The repo is registered once as a
dataset entity (name = repo name, ``files_url = hf://datasets/{namespace}/{repo}``), which is what a
customization job names. Each split's :class:`DatasetRef` ``uri`` points at its file, ``platform_uri`` at the repo.
Every step is idempotent: ``create_repo(exist_ok=True)``, re-uploading identical content, 409 on register = exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from flywheel.platforms.nemo_v1.client import NemoV1Clients, status_error, to_platform_error
from flywheel.removal import DATASET, DATASTORE_REPO, RemovalReport
from flywheel.types import DatasetRef, PlatformError

SPLIT_FOLDERS = {"train": "training", "val": "validation", "eval": "testing"}


def repo_name(run_key: str) -> str:
    """A Datastore/Entity-Store-safe name derived from the run key (deterministic)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", run_key).strip("-.") or "flywheel"
    name = re.sub(r"([-.])[-.]+", r"\1", name)  # the Hub refuses "--" and ".." in repo ids
    if len(name) > 90:
        # Cut, then drop a trailing separator so the "-{hash}" suffix cannot make a "--" (found end to end).
        name = f"{name[:80].rstrip('-.')}-{hashlib.sha256(run_key.encode()).hexdigest()[:8]}"
    return name


def split_path(split: str) -> str:
    return f"{SPLIT_FOLDERS.get(split, split)}/{split}.jsonl"


def parse_hf_uri(uri: str) -> tuple[str, str]:
    """``hf://datasets/{ns}/{repo}/{path}`` → (``ns/repo``, ``path``)."""
    if not uri.startswith("hf://datasets/"):
        raise PlatformError(f"not a Datastore dataset URI: {uri!r}", retryable=False)
    parts = uri[len("hf://datasets/"):].split("/", 2)
    if len(parts) < 3:
        raise PlatformError(f"dataset URI has no file path: {uri!r}", retryable=False)
    return f"{parts[0]}/{parts[1]}", parts[2]


def _jsonl(rows: Iterable[dict[str, Any]]) -> tuple[bytes, int]:
    lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows]
    return ("\n".join(lines) + ("\n" if lines else "")).encode(), len(lines)


class DatasetsV1:
    def __init__(self, clients: NemoV1Clients) -> None:
        self.c = clients

    async def ensure_namespace(self) -> None:
        """Create the namespace in the Entity Store and the Datastore (both idempotent)."""
        try:
            await self.c.sdk_create.namespaces.create(id=self.c.namespace)
        except Exception as exc:  # 409 = exists
            if status_error(exc) not in (409, 422):
                code = status_error(exc)
                if code is None or code >= 500:
                    # Ambiguous or transient: confirm by reading it back.
                    try:
                        await self.c.sdk.namespaces.retrieve(self.c.namespace)
                    except Exception as exc2:  # noqa: BLE001 - converted to a PlatformError
                        raise to_platform_error(exc2, f"namespace {self.c.namespace}") from exc
                else:
                    raise to_platform_error(exc, f"create namespace {self.c.namespace}") from exc
        # The Datastore keeps its own namespaces (Gitea orgs): POST /v1/datastore/namespaces (409 = exists).
        resp = await self.c.http.post(f"{self.c.datastore_url}/v1/datastore/namespaces",
                                      data={"namespace": self.c.namespace})
        if resp.status_code not in (200, 201, 409, 422):
            raise PlatformError(f"datastore namespace {self.c.namespace}: HTTP {resp.status_code}: {resp.text[:300]}")

    async def put(self, run_key: str, splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        files: dict[str, tuple[bytes, int]] = {split: _jsonl(rows) for split, rows in splits.items()}
        platform_uri = await self.upload(run_key, {split_path(s): data for s, (data, _) in files.items()})
        name = repo_name(run_key)
        return {
            split: DatasetRef(name=name, split=split, uri=f"{platform_uri}/{split_path(split)}", num_records=n,
                              sha256=hashlib.sha256(data).hexdigest(), platform_uri=platform_uri)
            for split, (data, n) in files.items()
        }

    async def upload(self, key: str, files: Mapping[str, bytes]) -> str:
        """``files`` (path in repo -> bytes) committed to the Datastore repo for ``key`` in one commit, the repo
        registered as a dataset entity; returns its ``hf://datasets/{ns}/{repo}``. Idempotent."""
        await self.ensure_namespace()
        name = repo_name(key)
        repo_id = f"{self.c.namespace}/{name}"

        def commit() -> None:
            from huggingface_hub import CommitOperationAdd

            self.c.hf.create_repo(repo_id, repo_type="dataset", exist_ok=True)
            ops = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()]
            self.c.hf.create_commit(repo_id, operations=ops, repo_type="dataset",
                                    commit_message=f"flywheel datasets for {key}")

        try:
            await asyncio.to_thread(commit)
        except Exception as exc:
            raise PlatformError(f"upload to Datastore {repo_id} failed: {exc}") from exc
        platform_uri = f"hf://datasets/{repo_id}"
        await self._register(name, platform_uri, key)
        return platform_uri

    async def _register(self, name: str, files_url: str, run_key: str) -> None:
        ns = self.c.namespace
        try:
            await self.c.sdk_create.datasets.create(name=name, namespace=ns, files_url=files_url,
                                                    description=f"flywheel run {run_key}")
            return
        except Exception as exc:
            code = status_error(exc)
            if code != 409 and not (code is None or code >= 500):
                raise to_platform_error(exc, f"register dataset {ns}/{name}") from exc
            create_exc = exc
        # 409 (exists) or ambiguous: it must now exist with our files_url.
        try:
            existing = await self.c.sdk.datasets.retrieve(name, namespace=ns)
        except Exception as exc:
            raise to_platform_error(create_exc, f"register dataset {ns}/{name}") from exc
        if existing.files_url.rstrip("/") != files_url:
            raise PlatformError(f"dataset {ns}/{name} exists with files_url {existing.files_url!r}, "
                                f"expected {files_url!r}", retryable=False)

    async def remove(self, run_key: str) -> RemovalReport:
        """Delete the dataset entity and the Datastore repo stored under ``run_key`` (DELETE of a job);
        reports what existed and was removed. Already gone is fine."""
        ns, name = self.c.namespace, repo_name(run_key)
        removed = RemovalReport()
        try:
            await self.c.sdk.datasets.delete(name, namespace=ns)
            removed.remove(DATASET, f"{ns}/{name}")
        except Exception as exc:
            if status_error(exc) != 404:
                raise to_platform_error(exc, f"delete dataset {ns}/{name}") from exc

        def delete_repo() -> bool:
            from huggingface_hub.errors import HfHubHTTPError

            try:
                self.c.hf.delete_repo(f"{ns}/{name}", repo_type="dataset")
                return True
            except HfHubHTTPError as exc:  # a plain 404 (no HF error-code header) is "not found" too
                if getattr(exc.response, "status_code", None) == 404:
                    return False
                raise

        try:
            if await asyncio.to_thread(delete_repo):
                removed.remove(DATASTORE_REPO, f"{ns}/{name}")
        except Exception as exc:
            raise PlatformError(f"delete Datastore repo {ns}/{name} failed: {exc}") from exc
        return removed

    async def read(self, ref: DatasetRef) -> list[dict[str, Any]]:
        repo_id, path = parse_hf_uri(ref.uri)
        url = f"{self.c.datastore_url}/v1/hf/datasets/{repo_id}/resolve/main/{path}"
        resp = await self.c.http.get(url, follow_redirects=True)
        if resp.status_code != 200:
            raise PlatformError(f"read {ref.uri}: HTTP {resp.status_code}: {resp.text[:300]}",
                                retryable=resp.status_code >= 500)
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]
