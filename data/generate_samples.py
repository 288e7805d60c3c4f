"""Seeded generator of synthetic production logs for a customer-service agent ("primary_assistant").

Each record has the log record shape of docs/api.md: an OpenAI chat.completions request (system prompt,
sometimes earlier turns, the user's message, 7 tools) and the production model's ChatCompletion.
About 10% of turns need no tool (a plain answer); tool-call arguments are sometimes JSON strings
and sometimes objects, as they are in real traffic; a few requests are re-sent verbatim (client
retries) so curation has duplicates to find.

    python data/generate_samples.py            # writes the shipped sample files next to this script
    generate(n, client_id, seed)               # a fast iterator for benchmarks (100k / 1M records)

Records of one ``generate`` call share the (read-only) ``tools`` list object: copying ~3 KB of
JSON schema per record would dominate generation time.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

WORKLOAD_ID = "primary_assistant"
PRODUCTION_MODEL = "meta/llama-3.3-70b-instruct"
START_TS = 1_767_225_600  # 2026-01-01T00:00:00Z
SPREAD_S = 14 * 24 * 3600  # timestamps spread over two weeks

SYSTEM_PROMPT = (
    "You are Aiva, the customer-service assistant of an online store. Use the tools to look up orders, "
    "shipments and products, and to change orders when the customer asks. Ask for missing details; "
    "never invent order numbers."
)


def _fn(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


_S = {"type": "string"}
TOOLS: list[dict] = [
    _fn("get_order_status", "Current status of an order.",
        {"order_id": {"type": "string", "description": "Order number, e.g. ORD-123456"}}, ["order_id"]),
    _fn("cancel_order", "Cancel an order that has not shipped yet.",
        {"order_id": {"type": "string"},
         "reason": {"type": "string", "enum": ["changed_mind", "found_cheaper", "ordered_by_mistake",
                                               "delivery_too_slow", "other"]}}, ["order_id", "reason"]),
    _fn("initiate_return", "Start a return for items of a delivered order.",
        {"order_id": _S, "item_sku": _S, "quantity": {"type": "integer", "minimum": 1},
         "reason": {"type": "string", "enum": ["damaged", "wrong_item", "not_as_described", "no_longer_needed"]},
         "refund_method": {"type": "string", "enum": ["original_payment", "store_credit"]}},
        ["order_id", "item_sku", "reason"]),
    _fn("track_shipment", "Tracking events of a shipment.",
        {"tracking_number": _S, "carrier": {"type": "string", "enum": ["ups", "fedex", "usps", "dhl"]}},
        ["tracking_number"]),
    _fn("update_shipping_address", "Change the delivery address of an order that has not shipped.",
        {"order_id": _S, "recipient_name": _S, "street": _S, "apartment": _S, "city": _S, "state": _S,
         "postal_code": _S, "country": {"type": "string", "description": "ISO 3166-1 alpha-2"},
         "phone": _S, "delivery_instructions": _S},
        ["order_id", "street", "city", "postal_code", "country"]),
    _fn("search_products", "Search the catalogue.",
        {"query": _S, "category": {"type": "string", "enum": ["electronics", "home", "outdoor", "clothing",
                                                              "toys"]},
         "max_price": {"type": "number"}, "in_stock_only": {"type": "boolean"},
         "sort_by": {"type": "string", "enum": ["relevance", "price_asc", "price_desc", "rating"]}}, ["query"]),
    _fn("get_product_details", "Details of one product.",
        {"product_id": _S, "include_reviews": {"type": "boolean"}}, ["product_id"]),
]

_NAMES = ["Maria Garcia", "James Smith", "Aiko Tanaka", "Olu Adebayo", "Priya Patel", "Lukas Weber", "Chen Wei",
          "Sofia Rossi", "Noah Johnson", "Fatima Khan"]
_STREETS = ["12 Oak Street", "455 Market St", "9 Rue de Rivoli", "88 King Road", "301 Elm Avenue", "7 Harbour Way"]
_CITIES = [("Springfield", "IL", "62704", "US"), ("Austin", "TX", "73301", "US"), ("Toronto", "ON", "M5V 2T6", "CA"),
           ("Leeds", "", "LS1 4AP", "GB"), ("Denver", "CO", "80202", "US")]
_PRODUCTS = [("wireless earbuds", "electronics"), ("camping tent", "outdoor"), ("air fryer", "home"),
             ("rain jacket", "clothing"), ("4k monitor", "electronics"), ("lego set", "toys"),
             ("standing desk", "home"), ("hiking boots", "outdoor"), ("usb-c charger", "electronics")]
_CANCEL_REASONS = {"I changed my mind": "changed_mind", "I found it cheaper elsewhere": "found_cheaper",
                   "I ordered it by mistake": "ordered_by_mistake", "the delivery takes too long": "delivery_too_slow"}
_RETURN_REASONS = {"it arrived damaged": "damaged", "you sent the wrong item": "wrong_item",
                   "it is not as described": "not_as_described", "I don't need it anymore": "no_longer_needed"}
_PLAIN = [("What are your opening hours?", "Our support team is available 24/7 in this chat, and by phone "
           "Monday to Friday, 8am-8pm."),
          ("Do you ship internationally?", "Yes, we ship to over 40 countries. Shipping costs are shown at checkout."),
          ("thanks, that's all", "You're welcome! Have a great day."),
          ("How long do refunds take?", "Refunds reach your original payment method within 5-10 business days."),
          ("Can I talk to a human?", "Of course - I'm transferring you to an agent now."),
          ("What is your return policy?", "You can return most items within 30 days of delivery.")]


def _order(rng: random.Random) -> str:
    return f"ORD-{rng.randint(100000, 999999)}"


def _email(rng: random.Random, name: str) -> str:
    return f"{name.split(maxsplit=1)[0].lower()}.{rng.randint(1, 99)}@example.com"


def _phone(rng: random.Random) -> str:
    return f"+1 {rng.randint(200, 989)}-{rng.randint(200, 989)}-{rng.randint(1000, 9999)}"


def _turn(rng: random.Random) -> tuple[str, str | None, dict | None]:  # noqa: C901 - one branch per scenario
    """(user text, tool name or None, arguments or the plain answer in a dict)."""
    kind = rng.random()
    if kind < 0.10:
        question, answer = rng.choice(_PLAIN)
        return question, None, {"answer": answer}
    tool = rng.choice(TOOLS)["function"]["name"]
    order = _order(rng)
    if tool == "get_order_status":
        text = rng.choice(["Where is my order {o}?", "what's the status of {o}", "Has order {o} shipped yet?",
                           "Can you check on order {o} for me please", "any update on {o}?"]).format(o=order)
        return text, tool, {"order_id": order}
    if tool == "cancel_order":
        said, code = rng.choice(list(_CANCEL_REASONS.items()))
        text = rng.choice(["Please cancel order {o}, {r}.", "I want to cancel {o} because {r}",
                           "cancel {o} - {r}"]).format(o=order, r=said)
        return text, tool, {"order_id": order, "reason": code}
    if tool == "initiate_return":
        sku = f"SKU-{rng.randint(1000, 9999)}"
        said, code = rng.choice(list(_RETURN_REASONS.items()))
        qty = rng.choice([1, 1, 1, 2, 3])
        text = rng.choice(["I'd like to return {q} of {s} from order {o}, {r}.",
                           "Return item {s} (qty {q}) on {o} because {r}"]).format(q=qty, s=sku, o=order, r=said)
        args = {"order_id": order, "item_sku": sku, "quantity": qty, "reason": code}
        if rng.random() < 0.4:
            args["refund_method"] = "store_credit"
            text += " Store credit is fine."
        return text, tool, args
    if tool == "track_shipment":
        carrier = rng.choice(["ups", "fedex", "usps", "dhl"])
        number = f"1Z{rng.randint(10**9, 10**10 - 1)}" if carrier == "ups" else str(rng.randint(10**11, 10**12 - 1))
        text = rng.choice(["Track my {c} package {n}", "where is shipment {n}?",
                           "Can you track {n} with {c}?"]).format(c=carrier.upper(), n=number)
        args = {"tracking_number": number}
        if carrier.upper() in text:
            args["carrier"] = carrier
        return text, tool, args
    if tool == "update_shipping_address":
        name = rng.choice(_NAMES)
        street = rng.choice(_STREETS)
        city, state, postal, country = rng.choice(_CITIES)
        args = {"order_id": order, "recipient_name": name, "street": street, "city": city, "postal_code": postal,
                "country": country}
        if state:
            args["state"] = state
        text = f"Please ship order {order} to {name}, {street}, {city} {state} {postal}, {country} instead."
        if rng.random() < 0.3:
            args["phone"] = _phone(rng)
            text += f" Call {args['phone']} if there is a problem."
        if rng.random() < 0.2:
            text += f" My email is {_email(rng, name)}."
        return " ".join(text.split()), tool, args
    if tool == "search_products":
        product, category = rng.choice(_PRODUCTS)
        args: dict = {"query": product}
        text = rng.choice(["Do you have {p}?", "show me {p}", "I'm looking for a {p}"]).format(p=product)
        if rng.random() < 0.5:
            price = rng.choice([50, 100, 200, 500])
            args["max_price"] = price
            text += f" under ${price}"
        if rng.random() < 0.3:
            args["category"] = category
            text += f" in {category}"
        if rng.random() < 0.3:
            args["in_stock_only"] = True
            text += ", in stock only"
        return text, tool, args
    product_id = f"P{rng.randint(10000, 99999)}"
    reviews = rng.random() < 0.5
    text = (f"Tell me more about product {product_id}" + (" and what reviewers say" if reviews else ""))
    return text, "get_product_details", {"product_id": product_id, "include_reviews": reviews}


def _assistant_reply(rng: random.Random, call_id: str, tool: str | None, args: dict) -> dict:
    if tool is None:
        return {"role": "assistant", "content": args["answer"]}
    arguments: dict | str = args if rng.random() < 0.5 else json.dumps(args)
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": tool, "arguments": arguments}}]}


def generate(n: int, client_id: str = "aiva-1", seed: int = 0, *, workload_id: str = WORKLOAD_ID,
             start_ts: int = START_TS, spread_s: int = SPREAD_S) -> Iterator[dict]:
    """Yield ``n`` synthetic log records, deterministic for (n, client_id, seed), oldest first."""
    rng = random.Random(f"{seed}:{client_id}")
    step = spread_s / max(n, 1)
    previous: dict | None = None
    for i in range(n):
        if previous is not None and rng.random() < 0.03:  # a client retry re-sends the same request
            yield previous
            continue
        ts = round(start_ts + i * step + rng.random() * step, 3)
        messages: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
        if rng.random() < 0.25:  # multi-turn: an earlier exchange precedes the current question
            text, tool, args = _turn(rng)
            call_id = f"call_{i}_0"
            messages.append({"role": "user", "content": text})
            reply = _assistant_reply(rng, call_id, tool, args)
            messages.append(reply)
            if tool is not None:
                messages.append({"role": "tool", "tool_call_id": call_id, "content": json.dumps({"ok": True})})
        text, tool, args = _turn(rng)
        messages.append({"role": "user", "content": text})
        message = _assistant_reply(rng, f"call_{i}_1", tool, args)
        record = {
            "timestamp": ts,
            "workload_id": workload_id,
            "client_id": client_id,
            "request": {"model": PRODUCTION_MODEL, "messages": messages, "tools": TOOLS, "tool_choice": "auto",
                        "temperature": 0.2},
            "response": {"id": f"chatcmpl-{client_id}-{i}", "object": "chat.completion", "created": int(ts),
                         "model": PRODUCTION_MODEL,
                         "choices": [{"index": 0, "message": message,
                                      "finish_reason": "tool_calls" if tool else "stop"}],
                         "usage": {"prompt_tokens": 900 + 40 * len(messages),
                                   "completion_tokens": 30 + rng.randint(0, 40),
                                   "total_tokens": 0}},
        }
        usage = record["response"]["usage"]
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        previous = record
        yield record


SAMPLE_FILES = {"aiva-1": 300, "aiva-2": 500, "aiva-3": 1000}


def write_samples(out_dir: Path, seed: int = 2026) -> dict[str, int]:
    written = {}
    for client_id, n in SAMPLE_FILES.items():
        path = out_dir / f"{WORKLOAD_ID}-{client_id}.jsonl"
        with path.open("w") as fh:
            for record in generate(n, client_id, seed):
                fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        written[str(path)] = n
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for path, n in write_samples(target).items():
        print(f"wrote {n} records to {path}")
