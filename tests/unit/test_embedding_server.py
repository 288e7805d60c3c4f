"""The embeddings server's HTTP contract, driven by our own endpoint client over a real socket.

The model behind it is a small deterministic encoder (character-bigram hashing) so this runs in
milliseconds; the real MiniLM behind the same server is covered in the slow lane.
"""

from __future__ import annotations

import hashlib
import itertools

import httpx
import numpy as np
import pytest

from flywheel.platforms.local.embedding_server import MAX_INPUTS, create_app
from flywheel.retrieval.candidates import EndpointEmbedder
from tests.emulators.openai_scripted import free_port
from tests.emulators.threaded_server import ThreadedServer


class BigramEncoder:
    dim = 32

    def encode(self, texts, **kwargs):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for a, b in itertools.pairwise(text):
                out[i, hashlib.blake2b((a + b).encode(), digest_size=1).digest()[0] % self.dim] += 1
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


@pytest.fixture(scope="module")
def server():
    runner = ThreadedServer(create_app(BigramEncoder(), "bigram", batch_size=8), free_port(), "embeddings server")
    runner.start_server()
    yield f"http://127.0.0.1:{runner.port}/v1"
    runner.stop()


def test_endpoint_client_gets_the_encoders_vectors_in_order(server):
    texts = [f"passage number {i} about returns" for i in range(150)]  # several client batches
    vectors = EndpointEmbedder(server, "bigram", batch_size=64).embed_passages(texts)
    assert np.allclose(vectors, BigramEncoder().encode(texts), atol=1e-6)


def test_asymmetric_client_sends_input_type_and_the_server_accepts_it(server):
    client = EndpointEmbedder(server, "bigram", asymmetric=True)
    assert np.allclose(client.embed_queries(["where is my order"]), client.embed_passages(["where is my order"]))


def test_models_health_and_errors(server):
    root = server.removesuffix("/v1")
    assert httpx.get(f"{root}/health").json()["status"] == "ok"
    assert httpx.get(f"{server}/models").json()["data"][0]["id"] == "bigram"
    single = httpx.post(f"{server}/embeddings", json={"input": "one text"}).json()
    assert len(single["data"]) == 1 and single["usage"]["prompt_tokens"] == 2
    for body, status, fragment in [({"model": "x", "input": ["a"]}, 404, "not served"),
                                   ({"input": []}, 400, "empty"),
                                   ({"input": ["a"] * (MAX_INPUTS + 1)}, 400, "at most"),
                                   ({"input": ["a"], "encoding_format": "base64"}, 400, "float"),
                                   ({"model": "bigram"}, 422, "input")]:
        response = httpx.post(f"{server}/embeddings", json=body)
        assert response.status_code == status and fragment in response.json()["detail"], body


def test_client_reports_http_errors_clearly(server):
    with pytest.raises(RuntimeError, match="HTTP 404"):
        EndpointEmbedder(server, "not-this-model").embed_queries(["x"])
