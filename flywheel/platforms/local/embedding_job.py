"""The whole retrieval flywheel on the local platform, in one process: logs -> datasets -> base eval ->
mined triplets -> contrastive fine-tuning -> the fine-tuned model behind a local ``/v1/embeddings``
server -> customized eval -> a comparison.

    python -m flywheel.platforms.local.embedding_job [--logs data/primary_assistant-aiva-kb.jsonl]
        [--corpus data/primary_assistant-aiva-kb-corpus.jsonl] [--work-dir .flywheel/embedding-job]
        [--finetuning-type all_weights|lora] [--epochs N] [--max-steps N]

The customized candidate is evaluated through the HTTP endpoint, exactly as any remote embeddings
endpoint would be, so the serving path is exercised too. This is the domain sequence the
``embedding_job`` workflow runs as activities.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from flywheel.config import CurationConfig, DataSplitConfig
from flywheel.platforms.local.embedding_trainer import train_embedding_model
from flywheel.retrieval.candidates import EndpointEmbedder, SentenceTransformerEmbedder, bundled_model_path
from flywheel.retrieval.config import RetrievalConfig
from flywheel.retrieval.corpus import Corpus, read_passages
from flywheel.retrieval.evaluate import evaluate_embedder, production_reference
from flywheel.retrieval.metrics import compare
from flywheel.retrieval.prepare import mine_datasets, prepare_retrieval_datasets

REPO = Path(__file__).resolve().parents[3]
SAMPLE_LOGS = REPO / "data" / "primary_assistant-aiva-kb.jsonl"
SAMPLE_CORPUS = REPO / "data" / "primary_assistant-aiva-kb-corpus.jsonl"
SERVER_MODULE = "flywheel.platforms.local.embedding_server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_embeddings(model_dir: str | Path | None, alias: str, *, port: int | None = None,
                     ready_timeout_s: float = 120.0, log_path: Path | None = None) -> Iterator[str]:
    """Run the embeddings server for ``model_dir`` in a child process; yields its ``/v1`` base URL and
    stops it (SIGTERM, then SIGKILL) on exit."""
    port = port or _free_port()
    cmd = [sys.executable, "-m", SERVER_MODULE, "--alias", alias, "--port", str(port)]
    if model_dir:
        cmd += ["--model-dir", str(model_dir)]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, process_group=0)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"embeddings server exited with code {proc.returncode} during startup"
                                   + (f" (log: {log_path})" if log_path else ""))
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json().get("pid") == proc.pid:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"embeddings server not ready after {ready_timeout_s:.0f}s")
            time.sleep(0.2)
        yield base_url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if log_path:
            log.close()


def run(logs: Path = SAMPLE_LOGS, corpus_path: Path | None = SAMPLE_CORPUS,
        work_dir: Path = Path(".flywheel/embedding-job"), config: RetrievalConfig | None = None,
        split: DataSplitConfig | None = None, progress=None) -> dict[str, Any]:
    config = config or RetrievalConfig()
    split = split or DataSplitConfig(eval_size=150, val_ratio=0.1, min_total_records=50)
    emit = progress or (lambda info: None)
    work_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    records = [json.loads(line) for line in logs.read_text().splitlines() if line.strip()]
    prepared = prepare_retrieval_datasets(records, split, CurationConfig(redact_pii=True),
                                          inputs={"logs": logs.name},
                                          extra_passages=read_passages(corpus_path) if corpus_path else ())
    corpus = Corpus.from_rows(prepared.corpus)
    emit({"stage": "datasets", "counts": prepared.counts})
    ks = config.ks
    base = SentenceTransformerEmbedder()
    started = time.perf_counter()
    base_vectors = base.embed_passages(corpus.texts)
    timings["base_embed_corpus_s"] = round(time.perf_counter() - started, 2)
    base_result = evaluate_embedder(base, prepared.splits["eval"], corpus, ks=ks, corpus_vectors=base_vectors)
    emit({"stage": "base-eval", "scores": base_result.scores})
    mined = mine_datasets(base, corpus, prepared.splits["train"], prepared.splits["val"], config,
                          corpus_vectors=base_vectors)
    timings["mining_s"] = mined.mining_seconds
    emit({"stage": "mined", "counts": mined.counts, "seconds": mined.mining_seconds})
    started = time.perf_counter()
    trained = train_embedding_model(mined.train, base_model=bundled_model_path(), work_dir=work_dir / "training",
                                    config=config.training, val_triplets=mined.val, progress=progress)
    timings["training_wall_s"] = round(time.perf_counter() - started, 2)
    with serve_embeddings(trained.model_dir, "customized-minilm", log_path=work_dir / "server.log") as url:
        customized = EndpointEmbedder(url, "customized-minilm")
        custom_result = evaluate_embedder(customized, prepared.splits["eval"], corpus, ks=ks)
    emit({"stage": "customized-eval", "scores": custom_result.scores})
    reference = production_reference(prepared.splits["eval"], corpus_size=len(corpus), ks=ks)
    report = {
        "counts": prepared.counts, "manifest_hash": prepared.manifest_hash, "corpus_size": len(corpus),
        "mining": mined.counts, "timings": timings,
        "training": trained.model_dump(exclude={"details"})
        | {"loss_first_last": [trained.details["loss_history"][0], trained.details["loss_history"][-1]]},
        "base": base_result.model_dump(exclude={"per_query", "record_ids"}),
        "customized": custom_result.model_dump(exclude={"per_query", "record_ids"}),
        "production": reference.model_dump(exclude={"per_query", "record_ids"}),
        "customized_vs_base": compare(base_result.per_query, custom_result.per_query),
    }
    (work_dir / "report.json").write_text(json.dumps(report, indent=1))
    return report


def format_table(report: dict[str, Any], metrics: tuple[str, ...] = ("recall_at_5", "ndcg_at_10", "mrr_at_10",
                                                                         "production_agreement_at_10")) -> str:
    lines = [f"{'candidate':<12}" + "".join(f"{m:>30}" for m in metrics)]
    for name in ("base", "customized", "production"):
        result = report[name]
        cells = []
        for m in metrics:
            if m in result["scores"]:
                lo, hi = result["confidence_intervals"][m]
                cells.append(f"{result['scores'][m]:.3f} [{lo:.3f}, {hi:.3f}]")
            else:
                cells.append("n/a")
        lines.append(f"{name:<12}" + "".join(f"{c:>30}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=SAMPLE_LOGS)
    parser.add_argument("--corpus", type=Path, default=SAMPLE_CORPUS)
    parser.add_argument("--work-dir", type=Path, default=Path(".flywheel/embedding-job"))
    parser.add_argument("--finetuning-type", choices=["all_weights", "lora"], default="all_weights")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--num-negatives", type=int, default=RetrievalConfig().num_negatives)
    args = parser.parse_args(argv)
    training = {"finetuning_type": args.finetuning_type, "epochs": args.epochs, "max_steps": args.max_steps}
    if args.finetuning_type == "lora":
        training["learning_rate"] = 2e-4
    config = RetrievalConfig(training=training, num_negatives=args.num_negatives)

    def progress(info: dict[str, Any]) -> None:
        if info.get("phase") == "training" and info["step"] % 5 and info["step"] != info["total_steps"]:
            return
        print(json.dumps(info, default=str)[:300], flush=True)  # noqa: T201 - command-line output

    report = run(args.logs, args.corpus, args.work_dir, config, progress=progress)
    print(format_table(report))  # noqa: T201 - command-line output
    summary = {"timings": report["timings"], "train_seconds": report["training"]["train_seconds"],
               "customized_vs_base": report["customized_vs_base"]}
    print(json.dumps(summary, indent=1))  # noqa: T201 - command-line output
    return 0


if __name__ == "__main__":
    sys.exit(main())
