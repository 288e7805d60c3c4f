"""SFT examples for the LoRA trainer: log records → (input_ids, labels) in the serving format.

The prompt is rendered exactly as the llama.cpp model server renders it
(:func:`flywheel.chat_format.render_prompt` with the GGUF's own chat template, ``bos_token=""``,
the model's EOS text, then tokenised with BOS added when the GGUF says ``add_bos_token``), and the
target is what the template renders after the generation prompt for the production model's
answer (:func:`flywheel.chat_format.training_pair`: ``assistant_target`` + the template's own
end-of-turn). Labels are ``-100`` on every prompt token, so the loss covers only the assistant
tokens the served model has to generate.

Truncation policy: an example whose prompt + target exceeds ``max_seq_length`` is **dropped**
(counted as ``too_long``), never truncated. Left-truncating the prompt would cut the system
prompt and tool definitions at its start, teaching the model to call tools it cannot see; cutting
the target would teach it to stop mid-call.

Tool pruning (opt-in, ``training_config.max_tools_per_example``): agents' tool lists are long (the
sample's 7 schemas are ~1,000 of a record's ~1,300 tokens) and a CPU has to run the whole prompt
through the model for every example. With the option set, each example's prompt keeps the tools
it calls plus seeded distractors up to that many, in their original order; the model still learns
the call format, the arguments and to choose among several tools. Serving always shows all tools.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.chat_format import ChatTemplateError, training_pair
from flywheel.records import call_name, message_tool_calls, response_message

IGNORE_INDEX = -100


@dataclass(frozen=True)
class GGUFPromptInfo:
    """What the server's prompt rendering depends on, read from the GGUF metadata."""

    chat_template: str | None
    add_bos: bool


@dataclass
class SFTExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def num_target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class SFTData:
    examples: list[SFTExample]
    dropped: Counter = field(default_factory=Counter)

    @property
    def num_tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)


def read_prompt_info(gguf_path: Path) -> GGUFPromptInfo:
    """The chat template and add-BOS flag the llama.cpp server will use for this GGUF."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))

    def _field(name: str) -> Any:
        f = reader.fields.get(name)
        return None if f is None else f.contents()

    template = _field("tokenizer.chat_template")
    add_bos = _field("tokenizer.ggml.add_bos_token")
    if add_bos is None:  # llama.cpp's default: SentencePiece vocabularies add BOS, BPE ones do not
        add_bos = _field("tokenizer.ggml.model") == "llama"
    return GGUFPromptInfo(chat_template=template or None, add_bos=bool(add_bos))


def conversation(row: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """A normalized log record → (messages ending with the production answer, tools)."""
    request = row["request"]
    messages = [dict(m) for m in request["messages"]]
    answer = dict(response_message(row["response"]))
    answer["role"] = "assistant"
    return messages + [answer], request.get("tools") or None


def _tool_name(tool: dict[str, Any]) -> str:
    return str((tool.get("function") or tool).get("name", ""))


def prune_tools(tools: list[dict[str, Any]] | None, messages: list[dict[str, Any]], max_tools: int | None,
                seed: int) -> list[dict[str, Any]] | None:
    """The tools the conversation calls plus seeded distractors, at most ``max_tools`` (see module doc)."""
    if not tools or max_tools is None or len(tools) <= max_tools:
        return tools
    called = {call_name(c) for m in messages for c in message_tool_calls(m)}
    keep = {i for i, t in enumerate(tools) if _tool_name(t) in called}
    others = [i for i in range(len(tools)) if i not in keep]
    digest = hashlib.sha256(f"{seed}:{sorted(called)}:{messages[-2].get('content') if len(messages) > 1 else ''}"
                            .encode()).digest()
    random.Random(digest).shuffle(others)
    keep.update(others[:max(0, max_tools - len(keep))])
    return [t for i, t in enumerate(tools) if i in keep]


def encode_example(row: dict[str, Any], tokenizer: Any, info: GGUFPromptInfo,
                   max_seq_length: int, max_tools: int | None = None, seed: int = 0) -> SFTExample | str:
    """One record → an :class:`SFTExample`, or the reason it was dropped."""
    try:
        messages, tools = conversation(row)
    except (KeyError, IndexError, TypeError, ValueError):
        return "malformed"
    tools = prune_tools(tools, messages, max_tools, seed)
    try:
        prompt, target = training_pair(messages, tools, info.chat_template, bos_token="",
                                       eos_token=tokenizer.eos_token or "")
    except (ChatTemplateError, ValueError):
        return "template_error"
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    bos = tokenizer.bos_token_id
    if info.add_bos and bos is not None and (not prompt_ids or prompt_ids[0] != bos):
        prompt_ids = [bos] + prompt_ids
    target_ids = tokenizer.encode(target, add_special_tokens=False)
    if not target_ids:
        return "empty_target"
    if len(prompt_ids) + len(target_ids) > max_seq_length:
        return "too_long"
    return SFTExample(input_ids=prompt_ids + target_ids,
                      labels=[IGNORE_INDEX] * len(prompt_ids) + list(target_ids))


def build_examples(rows: list[dict[str, Any]], tokenizer: Any, info: GGUFPromptInfo,
                   max_seq_length: int, max_tools: int | None = None, seed: int = 0) -> SFTData:
    data = SFTData(examples=[])
    for row in rows:
        result = encode_example(row, tokenizer, info, max_seq_length, max_tools, seed)
        if isinstance(result, str):
            data.dropped[result] += 1
        else:
            data.examples.append(result)
    return data


def collate(examples: list[SFTExample], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on prompt and padding)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
