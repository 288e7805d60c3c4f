"""Local LoRA training benchmark: CPU throughput and what a hard kill costs.

    python bench/bench_training.py [--steps 6] [--kill-after 3] [--seq 512] [--rank 16] [--batch 4]

1. A subprocess trains gemma-3-270m (demo settings: r=16, batch 4, seq ≤ 512, checkpoint every 2
   steps) and reports every step; its steps after the first give steps/s and tokens/s.
2. After step ``--kill-after`` it is SIGKILLed (no chance to checkpoint). A second subprocess
   resumes: we time kill → its first new optimizer step (process start, imports, model load from
   the dequantized cache, tokenisation, restore, one step) and count the steps redone (steps
   completed since the last checkpoint before the kill).
3. The resumed run then gets SIGTERM: we time the graceful stop (checkpoint + exit) and check
   that it lost no completed step.

The shipped sample records are ~1.1k Gemma tokens, so this bench trims each record to the called
tool's definition (system prompt kept) to fit the demo's 512-token sequences.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "primary_assistant-aiva-1.jsonl"


def bench_rows(n: int) -> list[dict]:
    out = []
    for line in DATA.read_text().splitlines():
        row = json.loads(line)
        calls = row["response"]["choices"][0]["message"].get("tool_calls") or []
        if not calls:
            continue
        called = {c["function"]["name"] for c in calls}
        tools = [t for t in row["request"].get("tools") or [] if t["function"]["name"] in called]
        out.append({**row, "request": {**row["request"], "tools": tools}})
        if len(out) == n:
            break
    return out


def _spec(args: argparse.Namespace):
    from flywheel.config import LoRAConfig, NIMConfig, TrainingConfig
    from flywheel.types import CustomizationSpec, DatasetRef

    return CustomizationSpec(
        name="bench-training", nim=NIMConfig(model_name="gemma-3-270m"),
        train=DatasetRef(name="train", split="train", uri="mem://bench", num_records=args.rows),
        training=TrainingConfig(epochs=1, batch_size=args.batch, learning_rate=3e-4, max_steps=args.steps,
                                max_seq_length=args.seq, checkpoint_every_steps=args.every),
        lora=LoRAConfig(adapter_dim=args.rank, adapter_dropout=0.05),
        output_model="customized-gemma-3-270m@bench", device="cpu")


def worker(args: argparse.Namespace) -> int:
    """Child process: train and print one JSON line per progress event."""
    sys.path.insert(0, str(ROOT))
    from flywheel.config import ModelSource
    from flywheel.platforms.local.trainer import TrainingStopped, train
    from flywheel.platforms.local.weights import provision

    def emit(event: dict) -> None:
        print(json.dumps({"t": time.time(), **event}, default=str), flush=True)

    emit({"phase": "process-started"})
    model = provision(ModelSource(package="gemma-3-270m-q4_k_m"), Path(args.model_cache))
    try:
        train(_spec(args), model_path=model, work_dir=Path(args.work_dir), rows_train=bench_rows(args.rows),
              progress=emit)
    except TrainingStopped as stop:
        emit({"phase": "stopped", "step": stop.step, "checkpoint": stop.checkpoint})
        return 3
    emit({"phase": "done"})
    return 0


class Child:
    def __init__(self, args: argparse.Namespace, work_dir: Path, log_name: str) -> None:
        cmd = [sys.executable, __file__, "--worker", "--work-dir", str(work_dir), "--model-cache", args.model_cache,
               "--steps", str(args.steps), "--seq", str(args.seq), "--rank", str(args.rank), "--batch",
               str(args.batch), "--rows", str(args.rows), "--every", str(args.every)]
        self.started = time.time()
        self.log = work_dir.parent / f"{work_dir.name}-{log_name}.log"
        with self.log.open("w") as stderr:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.events: list[dict] = []

    def next_event(self) -> dict | None:
        line = self.proc.stdout.readline()
        if not line:
            return None
        try:
            event = json.loads(line)
        except ValueError:
            return {}
        self.events.append(event)
        return event

    def wait_for(self, predicate) -> dict:
        while True:
            event = self.next_event()
            if event is None:
                raise RuntimeError(f"child exited (rc={self.proc.wait()}) before the expected event; "
                                   f"events: {self.events[-3:]}; log: {self.log}")
            if predicate(event):
                return event


def _steps(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("phase") == "training"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--kill-after", type=int, default=3)
    parser.add_argument("--every", type=int, default=2, help="checkpoint_every_steps")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--model-cache", default=os.environ.get(
        "FLYWHEEL_TEST_MODEL_CACHE", str(Path.home() / ".cache" / "flywheel" / "models")))
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-training-"))
    work.mkdir(parents=True, exist_ok=True)
    # 1-2: train, SIGKILL after step --kill-after.
    first = Child(args, work, "first")
    first.wait_for(lambda e: e.get("phase") == "training" and e["step"] >= args.kill_after)
    first.proc.send_signal(signal.SIGKILL)
    killed_at = time.time()
    first.proc.wait()
    done_before_kill = _steps(first.events)[-1]["step"]
    last_ckpt = max((e["step"] for e in _steps(first.events) if e.get("checkpoint", "") and
                     e["checkpoint"].endswith(f"step-{e['step']:06d}")), default=0)

    second = Child(args, work, "resumed")
    loading = second.wait_for(lambda e: e.get("phase") in ("loading", "finished"))
    first_new = second.wait_for(lambda e: e.get("phase") in ("training", "finished"))
    resumed_from = loading.get("step", 0)
    # 3: graceful stop of the resumed run.
    second.proc.send_signal(signal.SIGTERM)
    term_at = time.time()
    stopped = second.wait_for(lambda e: e.get("phase") in ("stopped", "done"))
    rc = second.proc.wait()
    exited_at = time.time()
    completed_before_term = _steps(second.events)[-1]["step"]

    timed = _steps(first.events)[1:] or _steps(first.events)
    step_s = sum(e["step_seconds"] for e in timed) / len(timed)
    tok_s = sum(e["tokens_per_s"] for e in timed) / len(timed)
    rows = [
        ("device", f"cpu (torch threads: {os.cpu_count()})"),
        ("settings", f"gemma-3-270m Q4_K_M dequantized fp32, LoRA r={args.rank} (q/k/v/o/gate/up/down), "
                     f"batch {args.batch} (micro 1), seq<={args.seq}"),
        ("sec/step (mean of steps 2..)", f"{step_s:.2f}"),
        ("steps/s", f"{1 / step_s:.3f}"),
        ("tokens/s (prompt+target tokens)", f"{tok_s:.0f}"),
        ("first run: process start -> step 1", f"{_steps(first.events)[0]['t'] - first.started:.1f} s"),
        ("SIGKILL after step", str(done_before_kill)),
        ("newest checkpoint before kill", f"step {last_ckpt}"),
        ("resumed from checkpoint", f"step {resumed_from}"),
        ("first new step of resumed run", str(first_new.get("step"))),
        ("kill -> resumed process loading", f"{loading['t'] - killed_at:.1f} s"),
        ("kill -> first new step done", f"{first_new['t'] - killed_at:.1f} s"),
        ("steps redone per kill (completed since ckpt)", str(done_before_kill - resumed_from)),
        ("SIGTERM -> checkpointed exit", f"{exited_at - term_at:.1f} s (rc={rc}, stopped at step "
                                         f"{stopped.get('step')}, "
                                         f"steps lost {completed_before_term - stopped.get('step', 0)})"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\nLoRA training benchmark (work dir {work})")
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")
    ok = first_new.get("step") == resumed_from + 1 and resumed_from == last_ckpt
    print("  resume check:", "OK (continued at the step after the checkpoint)" if ok else "UNEXPECTED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
