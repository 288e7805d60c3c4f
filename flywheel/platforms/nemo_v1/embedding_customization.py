"""Contrastive fine-tuning of an embedding model on the NeMo Customizer (v1).

* Config: ``POST /v1/customization/configs`` for the candidate's ``customizer_configs.target`` (an embedding
  target such as ``nvidia/llama-3.2-nv-embedqa-1b@v2``), training type ``sft``; reused or versioned by an
  options hash exactly like the LLM configs (:meth:`CustomizationV1.ensure_named_config`).
* Dataset: the mined triplets, uploaded by :mod:`.retrieval_data` as the Customizer's
  ``training/training.jsonl`` / ``validation/validation.jsonl`` (``{query, pos_doc, neg_doc[]}``) and
  registered under the triplets' dataset name.
* Job: ``POST /v1/customization/jobs`` with our deterministic name in ``custom_fields.flywheel_name``; a retried
  activity finds that job and re-attaches to it (one create per name, ambiguous creates resolved by look-up).
  ``finetuning_type: all_weights`` stays ``all_weights``; ``lora`` becomes ``lora_merged`` (LoRA trained, then
  merged into full weights), because an embedding NIM serves full weights and no adapters.
  ``dataset_parameters`` carries the number of mined negatives per query and turns in-batch negatives on
  (what our local trainer does too).
* Polling, heartbeats, infrastructure failures and cancel: the v1 job state machine (:mod:`.jobs`).
* The result is a model in the Entity Store, not an adapter: it is served (DMS deployment with the
  candidate's embedding NIM image) only for the length of its evaluation (:mod:`.retrieval_eval`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from flywheel.platforms.nemo_v1.customization import NAME_FIELD, CustomizationV1, customized_model_name
from flywheel.platforms.nemo_v1.jobs import create_once, log_messages, poll_job, reusable
from flywheel.progress import TrainingProgress
from flywheel.retrieval.types import EmbeddingCustomizationSpec
from flywheel.types import CustomizationResult, PlatformError, ProgressFn

FINETUNING_TYPES = {"all_weights": "all_weights", "lora": "lora_merged"}


def nemo_finetuning_type(spec: EmbeddingCustomizationSpec) -> str:
    return FINETUNING_TYPES[spec.retrieval.training.finetuning_type]


def embedding_config_options(spec: EmbeddingCustomizationSpec) -> dict[str, Any]:
    cc = spec.candidate.customizer_configs
    if cc is None:
        raise PlatformError(f"embedding_config.candidates[{spec.candidate.model_name}].customizer_configs is not set: "
                            f"the NeMo Customizer needs a target and the NIM image that serves the result",
                            retryable=False, error_type="TrainingConfigError")
    return {
        "target": cc.target,
        "max_seq_length": cc.max_seq_length,
        "training_precision": cc.training_precision,
        "training_options": [{
            "training_type": "sft",
            "finetuning_type": nemo_finetuning_type(spec),
            "num_gpus": cc.gpus,
            "num_nodes": cc.num_nodes,
            "tensor_parallel_size": cc.tensor_parallel_size,
            "micro_batch_size": cc.micro_batch_size,
        }],
    }


def embedding_hyperparameters(spec: EmbeddingCustomizationSpec) -> dict[str, Any]:
    tc = spec.retrieval.training
    hp: dict[str, Any] = {"training_type": "sft", "finetuning_type": nemo_finetuning_type(spec), "epochs": tc.epochs,
                          "batch_size": tc.batch_size, "learning_rate": tc.learning_rate, "seed": tc.seed}
    if tc.max_steps is not None:
        hp["max_steps"] = tc.max_steps
    if tc.finetuning_type == "lora":
        hp["lora"] = {"adapter_dim": tc.lora_rank, "alpha": tc.lora_alpha, "adapter_dropout": tc.lora_dropout}
    return hp


def config_base_name(spec: EmbeddingCustomizationSpec) -> str:
    return f"{spec.candidate.model_name.split('/')[-1]}-embedding@v1.0.0+dfw"


class EmbeddingCustomizationV1:
    def __init__(self, customization: CustomizationV1) -> None:
        self.cust = customization
        self.c = customization.c

    async def create_job(self, spec: EmbeddingCustomizationSpec, config: str, output_model: str) -> str:
        ns = self.c.namespace
        return await create_once("customization", spec.name, lambda: self.c.sdk_create.customization.jobs.create(
            name=spec.name, namespace=ns, config=config, dataset={"name": spec.triplets.name, "namespace": ns},
            output_model=output_model, hyperparameters=embedding_hyperparameters(spec),
            dataset_parameters={"num_hard_negatives": spec.retrieval.num_negatives, "in_batch_negatives": True},
            custom_fields={NAME_FIELD: spec.name}), self.cust.find_job)

    async def customize(self, spec: EmbeddingCustomizationSpec, progress: ProgressFn | None,
                        cleanup_on_cancel) -> CustomizationResult:
        t0 = time.monotonic()
        options = embedding_config_options(spec)  # a missing customizer_configs fails before anything is created
        model = customized_model_name(spec, self.c.namespace)
        existing = reusable("customization", spec.name, await self.cust.find_job(spec.name))
        if existing:
            job_id = str(existing["id"])
        else:
            config = await self.cust.ensure_named_config(config_base_name(spec), options)
            job_id = await self.create_job(spec, config, model)
        uri = self.cust.job_uri(job_id)
        if progress:
            progress({"kind": "customization", "job_id": job_id, "nmp_uri": uri, "customized_model": model,
                      "status": "attached" if existing else "created"})

        def describe(st: dict[str, Any]) -> dict[str, Any]:
            return TrainingProgress(progress=st.get("percentage_done"), epochs_completed=st.get("epochs_completed"),
                                    steps_completed=st.get("steps_completed"), loss=st.get("train_loss"),
                                    status_logs=log_messages(st.get("status_logs")), customized_model=model).details()

        timing = self.c.timing
        try:
            final = await poll_job(kind="customization", job_id=job_id, nmp_uri=uri,
                                   fetch=lambda: self.c.get_json(f"{uri}/status"), describe=describe,
                                   interval_s=timing.poll_interval_s, timeout_s=timing.customization_timeout_s,
                                   pending_timeout_s=timing.pending_timeout_s, progress=progress)
        except asyncio.CancelledError:
            if cleanup_on_cancel():
                await self.cust.cancel_job(job_id)
            raise
        except PlatformError as exc:
            if exc.error_type in ("InfrastructureError", "Timeout") and exc.details.get("status") != "failed":
                await self.cust.cancel_job(job_id)  # don't leave it queued; a retry creates a fresh job
            raise
        return CustomizationResult(
            customized_model=model, adapter_uri=model, steps_completed=int(final.get("steps_completed") or 0),
            epochs_completed=int(final.get("epochs_completed") or 0), final_loss=final.get("train_loss"), nmp_uri=uri,
            details={"job_id": job_id, "finetuning_type": spec.retrieval.training.finetuning_type,
                     "nemo_finetuning_type": nemo_finetuning_type(spec), "val_loss": final.get("val_loss"),
                     "train_seconds": final.get("elapsed_time"), "runtime_seconds": time.monotonic() - t0})
