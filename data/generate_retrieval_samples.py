"""Seeded generator of synthetic retrieval logs: the knowledge-base retriever behind "primary_assistant".

The store's help centre is a corpus of policy passages, one per (topic, product category, region),
plus archived versions of some of them. Passages of one topic differ only in the region, the
category and the value ("30 days" vs "60 days"), so the passages a retriever must tell apart are
near-duplicates: exactly the hard negatives contrastive fine-tuning learns from. Queries name a
product ("earbuds") and a place ("Toronto") rather than the category and region the passage
names, so a retriever must map one to the other.

Each record is a retrieval log (see ``docs/retrieval.md``): the query, the production retriever's
top-10 passages (id, text, score) and which of them the pipeline relied on — the passages the
answering model cited (``cited_ids``) or an explicit relevance label (``relevant_ids``). A few
records are client retries (exact duplicates), some queries carry an e-mail address or phone
number (PII for curation to redact), and a few are malformed, so every curation rule has work.

    python data/generate_retrieval_samples.py      # writes the shipped sample next to this script
    generate(n, client_id, seed)                   # iterator of records
    knowledge_base(seed)                           # the full corpus, {id, text} dicts
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

WORKLOAD_ID = "primary_assistant"
CLIENT_ID = "aiva-kb"
PRODUCTION_RETRIEVER = "nvidia/llama-3.2-nv-embedqa-1b-v2"
START_TS = 1_767_225_600  # 2026-01-01T00:00:00Z
SPREAD_S = 14 * 24 * 3600
TOP_K = 10
SAMPLE_RECORDS = 640
SAMPLE_FILE = f"{WORKLOAD_ID}-{CLIENT_ID}.jsonl"
CORPUS_FILE = f"{WORKLOAD_ID}-{CLIENT_ID}-corpus.jsonl"  # the help centre's full passage export

# category -> (label in passages, product words used in queries)
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "audio": ("audio equipment", ("earbuds", "headphones", "bluetooth speaker")),
    "computers": ("computers and monitors", ("laptop", "4k monitor", "mechanical keyboard")),
    "phones": ("phones and wearables", ("smartphone", "smartwatch", "tablet")),
    "kitchen": ("kitchen appliances", ("air fryer", "blender", "espresso machine")),
    "furniture": ("furniture", ("standing desk", "sofa", "bookshelf")),
    "outdoor": ("camping and outdoor gear", ("tent", "sleeping bag", "hiking boots")),
    "clothing": ("clothing and footwear", ("rain jacket", "jeans", "wool sweater")),
    "toys": ("toys and games", ("lego set", "jigsaw puzzle", "board game")),
    "beauty": ("beauty and personal care", ("hair dryer", "electric toothbrush", "face cream")),
    "garden": ("garden and patio", ("lawn mower", "garden hose", "patio heater")),
    "sports": ("sports and fitness", ("treadmill", "road bike", "yoga mat")),
    "baby": ("baby and nursery", ("stroller", "car seat", "baby monitor")),
    "pets": ("pet supplies", ("dog bed", "cat tree", "aquarium")),
    "office": ("office supplies", ("office chair", "label printer", "paper shredder")),
}
# region -> (label in passages, currency, places used in queries)
REGIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "us": ("the United States", "USD", ("Chicago", "Texas", "the US")),
    "ca": ("Canada", "CAD", ("Toronto", "Vancouver", "Canada")),
    "uk": ("the United Kingdom", "GBP", ("London", "Manchester", "the UK")),
    "de": ("Germany", "EUR", ("Berlin", "Munich", "Germany")),
    "au": ("Australia", "AUD", ("Sydney", "Melbourne", "Australia")),
    "fr": ("France", "EUR", ("Paris", "Lyon", "France")),
    "nl": ("the Netherlands", "EUR", ("Amsterdam", "Rotterdam", "the Netherlands")),
}


def _days(rng: random.Random) -> str:
    return f"{rng.choice([14, 21, 30, 45, 60, 90])} days"


def _fee(rng: random.Random, currency: str) -> str:
    return f"{rng.choice([4.99, 7.5, 9.99, 12, 15, 19.99, 25])} {currency}"


# topic -> (title, passage template, value maker, query templates). {cat} {region} {value} {product} {place}
ValueMaker = Callable[[random.Random, str], str]  # (rng, currency) -> the policy's value
TOPICS: dict[str, tuple[str, str, ValueMaker, tuple[str, ...]]] = {}


def _topic(name: str, title: str, passage: str, value: ValueMaker, queries: tuple[str, ...]) -> None:
    TOPICS[name] = (title, passage, value, queries)


_topic("return_window", "Return window",
       "Customers in {region} can return {cat} within {value} of delivery for a full refund, provided the item "
       "is unused and in its original packaging.",
       lambda r, c: _days(r),
       ("How long do I have to return my {product}? I live in {place}.",
        "what is the return period for a {product} bought in {place}",
        "Can I still send back a {product} I got three weeks ago? Ordering from {place}.",
        "{place}: deadline for returning an unused {product}?"))
_topic("return_shipping", "Return shipping costs",
       "Return shipping for {cat} in {region} costs {value}, deducted from the refund; items returned because "
       "they arrived faulty ship back free of charge.",
       lambda r, c: _fee(r, c),
       ("Do I have to pay postage to return a {product} in {place}?",
        "how much does it cost to ship back a {product} from {place}",
        "return label fee for a {product}, I'm in {place}"))
_topic("warranty", "Manufacturer warranty",
       "{cat_cap} sold in {region} carry a {value} warranty covering manufacturing defects; keep the order "
       "confirmation as proof of purchase.",
       lambda r, c: f"{r.choice([6, 12, 18, 24, 36])}-month",
       ("What warranty comes with a {product} in {place}?",
        "my {product} stopped working, is it still under warranty? bought it in {place}",
        "how many months of warranty on a {product} ({place})"))
_topic("delivery_time", "Standard delivery times",
       "Standard delivery of {cat} within {region} takes {value}; orders placed before 2 pm ship the same day.",
       lambda r, c: f"{(lo := r.choice([2, 3, 4, 5]))}-{lo + r.choice([2, 3, 5])} business days",
       ("How long does shipping take for a {product} to {place}?",
        "when will my {product} arrive if I order today? shipping to {place}",
        "standard delivery time for a {product} in {place}"))
_topic("express", "Express delivery",
       "Express next-day delivery is available for {cat} in {region} for {value}; bulky items are excluded "
       "where noted on the product page.",
       lambda r, c: _fee(r, c),
       ("Can I get my {product} delivered tomorrow in {place}, and what does it cost?",
        "price of express shipping for a {product} to {place}",
        "next day delivery {product} {place}"))
_topic("free_shipping", "Free shipping threshold",
       "Orders of {cat} delivered in {region} ship free above {value}; below that a flat shipping fee applies.",
       lambda r, c: f"{r.choice([25, 35, 49, 50, 75, 99])} {c}",
       ("Is shipping free for a {product} in {place}?",
        "minimum order for free delivery of a {product} to {place}",
        "how much do I need to spend to get free shipping on a {product}, {place}"))
_topic("damaged", "Items damaged in transit",
       "If {cat} arrive damaged in {region}, report it within {value} of delivery with photos of the item and "
       "the box; we send a replacement or refund without requiring a return.",
       lambda r, c: f"{r.choice([24, 48, 72])} hours",
       ("My {product} arrived broken, what do I do? I'm in {place}.",
        "the box was crushed and my {product} is damaged ({place}) - how long do I have to report it",
        "damaged {product} on delivery in {place}"))
_topic("price_match", "Price match",
       "We match a lower price for {cat} from a major retailer in {region} within {value} of your purchase; "
       "marketplace sellers and clearance prices are excluded.",
       lambda r, c: _days(r),
       ("I found my {product} cheaper elsewhere in {place}, can you match the price?",
        "price match on a {product} I bought last week, {place}",
        "is there a price guarantee for a {product} in {place}"))
_topic("assembly", "Assembly and installation service",
       "Professional assembly or installation of {cat} is offered in {region} for {value} per item, booked at "
       "checkout or within 30 days of delivery.",
       lambda r, c: _fee(r, c),
       ("Can someone set up my {product} for me in {place}?",
        "cost of installation service for a {product} ({place})",
        "do you assemble {product} orders in {place}"))
_topic("restocking", "Restocking fee",
       "Opened {cat} returned in {region} are subject to a {value} restocking fee unless the item is defective.",
       lambda r, c: f"{r.choice([0, 5, 10, 15, 20])}%",
       ("Is there a restocking fee if I return an opened {product} in {place}?",
        "will I get charged for returning a {product} I opened? ({place})",
        "restocking charge {product} {place}"))
_topic("exchange", "Exchanges",
       "{cat_cap} bought in {region} can be exchanged for a different size, colour or model within {value}; "
       "price differences are charged or refunded to the original payment method.",
       lambda r, c: _days(r),
       ("Can I swap my {product} for another model in {place}?",
        "how long do I have to exchange a {product}, I'm in {place}",
        "exchange a {product} for a different colour {place}"))
_topic("installments", "Paying in installments",
       "{cat_cap} over {value} can be paid in four interest-free installments in {region}, subject to approval "
       "by our payment partner.",
       lambda r, c: f"{r.choice([50, 100, 150, 200, 300])} {c}",
       ("Can I pay for a {product} in installments in {place}?",
        "buy now pay later for a {product} ({place})",
        "split the payment for my {product} in {place}"))
_topic("protection_plan", "Extended protection plan",
       "An extended protection plan for {cat} in {region} adds {value} of cover for accidental damage and "
       "breakdowns; it must be bought within 30 days of the product.",
       lambda r, c: f"{r.choice([1, 2, 3, 4])} years",
       ("Do you sell extended protection for a {product} in {place}?",
        "accidental damage cover for my {product}, {place}",
        "how long does the protection plan for a {product} last in {place}"))
_topic("trade_in", "Trade-in and recycling",
       "Trade in used {cat} in {region} and receive store credit of up to {value}; items that cannot be resold "
       "are recycled free of charge.",
       lambda r, c: f"{r.choice([20, 50, 100, 150, 250])} {c}",
       ("Can I trade in my old {product} in {place}?",
        "how do I recycle an old {product} in {place}",
        "store credit for trading in a {product} ({place})"))
_topic("preorder", "Pre-orders",
       "Pre-ordered {cat} in {region} are charged when they ship and can be cancelled free of charge up to "
       "{value} before the release date.",
       lambda r, c: f"{r.choice([1, 2, 3, 5, 7])} days",
       ("When am I charged for a pre-ordered {product} in {place}?",
        "can I cancel my {product} pre-order? ({place})",
        "pre-order cancellation deadline {product} {place}"))
_topic("pickup", "Click and collect",
       "{cat_cap} ordered for store pickup in {region} are held for {value} after the ready-for-pickup e-mail; "
       "bring photo ID and the order number.",
       lambda r, c: f"{r.choice([3, 5, 7, 10, 14])} days",
       ("How long will the store hold my {product} for pickup in {place}?",
        "click and collect {product} {place}, what do I need to bring",
        "I can't pick up my {product} this week ({place}) - when does the reservation expire"))

ARCHIVED_SHARE = 0.45  # share of facts that also have an archived (superseded) version in the corpus


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _passage_id(topic: str, cat: str, region: str, archived: bool = False) -> str:
    return f"kb-{topic}-{cat}-{region}" + ("-2023" if archived else "")


def knowledge_base(seed: int = 2026) -> list[dict[str, Any]]:
    """Every passage of the help centre: ``{id, text, topic, category, region, archived}``, deterministic."""
    rng = random.Random(f"kb:{seed}")
    passages = []
    for topic, (title, template, value, _queries) in TOPICS.items():
        for cat, (cat_label, _products) in CATEGORIES.items():
            for region, (region_label, currency, _places) in REGIONS.items():
                current = value(rng, currency)
                fields = {"cat": cat_label, "cat_cap": _cap(cat_label), "region": region_label, "value": current}
                text = f"{title} - {_cap(cat_label)} ({region_label}). " + template.format(**fields)
                passages.append({"id": _passage_id(topic, cat, region), "text": text, "topic": topic,
                                 "category": cat, "region": region, "archived": False})
                if rng.random() < ARCHIVED_SHARE:
                    old = value(rng, currency)
                    old_text = (f"{title} - {_cap(cat_label)} ({region_label}), archived 2023 policy, no longer "
                                f"applies. " + template.format(**{**fields, "value": old}))
                    passages.append({"id": _passage_id(topic, cat, region, True), "text": old_text, "topic": topic,
                                     "category": cat, "region": region, "archived": True})
    return passages


_PII = ("My email is {name}@example.com if you need it.", "Call me on 415-555-{n:04d} please.",
        "You can reach me at {name}.{n}@mailbox.org.")
_NAMES = ("maria.garcia", "jsmith", "aiko", "olu.adebayo", "priya", "lweber")


def _results(rng: random.Random, positive: dict, by_key: dict, kb: list[dict]) -> list[dict[str, Any]]:
    """The production retriever's top-10: the positive among its near-duplicates, scored and ranked."""
    topic, cat, region = positive["topic"], positive["category"], positive["region"]
    pool: list[dict] = []
    archived = by_key.get((topic, cat, region, True))
    if archived:
        pool.append(archived)
    pool += [by_key[(topic, cat, r, False)] for r in REGIONS if r != region]
    pool += rng.sample([by_key[(topic, c, region, False)] for c in CATEGORIES if c != cat], 3)
    pool += rng.sample([by_key[(t, cat, region, False)] for t in TOPICS if t != topic], 2)
    rng.shuffle(pool)
    negatives = pool[:TOP_K - 1]
    while len(negatives) < TOP_K - 1:
        extra = rng.choice(kb)
        if extra is not positive and extra not in negatives:
            negatives.append(extra)
    roll = rng.random()  # the production model is good, not perfect
    rank = 0 if roll < 0.7 else rng.randint(1, 2) if roll < 0.92 else rng.randint(3, TOP_K - 1)
    ranked = negatives[:rank] + [positive] + negatives[rank:]
    score = 0.86 + rng.random() * 0.06
    results = []
    for passage in ranked:
        results.append({"id": passage["id"], "text": passage["text"], "score": round(score, 4)})
        score -= 0.004 + rng.random() * 0.02
    return results


def _malformed(rng: random.Random, record: dict) -> dict:
    """One of the ways real retrieval logs go wrong (each is a curation rule's reason)."""
    retrieval = record["retrieval"]
    kind = rng.choice(["no_query", "no_results", "cited_unknown", "no_signal", "bad_score"])
    if kind == "no_query":
        retrieval["query"] = "   "
    elif kind == "no_results":
        retrieval["results"] = []
    elif kind == "cited_unknown":
        retrieval["cited_ids"] = ["kb-does-not-exist"]
        retrieval.pop("relevant_ids", None)
    elif kind == "no_signal":
        retrieval.pop("cited_ids", None)
        retrieval.pop("relevant_ids", None)
    else:
        retrieval["results"][0]["score"] = "high"
    return record


def generate(n: int, client_id: str = CLIENT_ID, seed: int = 2026, *, workload_id: str = WORKLOAD_ID,
             start_ts: int = START_TS, spread_s: int = SPREAD_S) -> Iterator[dict]:
    """Yield ``n`` retrieval log records, deterministic for (n, client_id, seed), oldest first."""
    kb = knowledge_base(seed)
    by_key = {(p["topic"], p["category"], p["region"], p["archived"]): p for p in kb}
    current = [p for p in kb if not p["archived"]]
    rng = random.Random(f"{seed}:{client_id}")
    step = spread_s / max(n, 1)
    previous: dict | None = None
    for i in range(n):
        if previous is not None and rng.random() < 0.03:  # a client retry logs the same retrieval twice
            yield previous
            continue
        positive = rng.choice(current)
        _title, _passage, _value, queries = TOPICS[positive["topic"]]
        product = rng.choice(CATEGORIES[positive["category"]][1])
        place = rng.choice(REGIONS[positive["region"]][2])
        query = rng.choice(queries).format(product=product, place=place)
        if rng.random() < 0.04:
            query += " " + rng.choice(_PII).format(name=rng.choice(_NAMES), n=rng.randrange(10000))
        results = _results(rng, positive, by_key, kb)
        retrieval: dict[str, Any] = {"query": query, "retriever": PRODUCTION_RETRIEVER, "top_k": TOP_K,
                                     "results": results}
        if rng.random() < 0.25:  # a reviewer labelled this one
            retrieval["relevant_ids"] = [positive["id"]]
        else:  # the answering model cited what it used
            retrieval["cited_ids"] = [positive["id"]]
        ts = round(start_ts + i * step + rng.random() * step, 3)
        record = {"timestamp": ts, "workload_id": workload_id, "client_id": client_id, "retrieval": retrieval}
        if rng.random() < 0.02:
            record = _malformed(rng, record)
        previous = record
        yield record


def write_sample(out_dir: Path, n: int = SAMPLE_RECORDS, seed: int = 2026) -> tuple[Path, Path]:
    """The logs file and the corpus export ({id, text} per line) the retriever indexes."""
    path = out_dir / SAMPLE_FILE
    with path.open("w") as fh:
        for record in generate(n, CLIENT_ID, seed):
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
    corpus = out_dir / CORPUS_FILE
    with corpus.open("w") as fh:
        for passage in knowledge_base(seed):
            fh.write(json.dumps({"id": passage["id"], "text": passage["text"]}, separators=(",", ":")) + "\n")
    return path, corpus


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    logs, corpus = write_sample(target)
    print(f"wrote {SAMPLE_RECORDS} records to {logs} and the corpus to {corpus}")
