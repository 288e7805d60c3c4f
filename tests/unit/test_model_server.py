"""The OpenAI-compatible model server with a fake llama.cpp model (the real one: tests/integration)."""

import json

import httpx
import pytest

from flywheel.platforms.local.model_server import ChatService, create_app

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "send_email", "parameters": {"type": "object", "properties": {}}}}]


class FakeLlama:
    def __init__(self, text: str, n_ctx: int = 2048) -> None:
        self.text = text
        self._n_ctx = n_ctx
        self.metadata: dict[str, str] = {}
        self.prompts: list[str] = []
        self.kwargs: list[dict] = []

    def n_ctx(self) -> int:
        return self._n_ctx

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        self.prompts.append(text.decode())
        return list(range(len(text.split())))  # one token per word

    def create_completion(self, prompt, **kwargs):
        self.kwargs.append(kwargs)
        return {"choices": [{"text": self.text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": 7}}


def client_for(llm: FakeLlama) -> httpx.AsyncClient:
    app = create_app(ChatService(llm, "tiny"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_tool_call_response_shape():
    llm = FakeLlama('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    async with client_for(llm) as client:
        resp = await client.post("/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": "weather in Oslo"}], "tools": TOOLS,
            "max_tokens": 32, "stop": ["END"]})
    assert resp.status_code == 200
    body = resp.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and body["model"] == "tiny"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert body["usage"]["completion_tokens"] == 7
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 7
    assert "<tools>" in llm.prompts[0]
    assert llm.kwargs[0]["max_tokens"] == 32 and "END" in llm.kwargs[0]["stop"]
    assert llm.kwargs[0]["temperature"] == 0.0


async def test_health_and_models():
    async with client_for(FakeLlama("hi")) as client:
        assert (await client.get("/health")).json()["status"] == "ok"
        assert [m["id"] for m in (await client.get("/v1/models")).json()["data"]] == ["tiny"]


async def test_plain_answer_and_tool_choice_none():
    llm = FakeLlama("Hello!")
    async with client_for(llm) as client:
        resp = await client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, "tool_choice": "none"})
    choice = resp.json()["choices"][0]
    assert choice == {"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop",
                      "logprobs": None}
    assert "<tools>" not in llm.prompts[0]


async def test_named_tool_choice_prefills_the_call_tag():
    llm = FakeLlama('\n{"name": "send_email", "arguments": {}}\n</tool_call>')
    async with client_for(llm) as client:
        resp = await client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "mail"}], "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "send_email"}}})
    assert resp.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "send_email"
    assert llm.prompts[0].endswith("<|im_start|>assistant\n<tool_call>")
    assert '"get_weather"' not in llm.prompts[0]


@pytest.mark.parametrize("body, fragment", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": TOOLS,
      "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "nope"),
    ({"messages": [{"role": "user", "content": "word " * 100}]}, "context window"),
])
async def test_input_errors_are_400_with_detail(body, fragment):
    async with client_for(FakeLlama("x", n_ctx=50)) as client:
        resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400
    assert fragment in resp.json()["detail"]


async def test_max_tokens_clamped_to_remaining_context():
    llm = FakeLlama("ok", n_ctx=60)
    async with client_for(llm) as client:
        resp = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                               "max_tokens": 1000})
    assert resp.status_code == 200
    prompt_tokens = len(llm.prompts[0].split())
    assert llm.kwargs[0]["max_tokens"] == 60 - prompt_tokens
