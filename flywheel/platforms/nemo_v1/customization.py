"""Customization (LoRA SFT) on NeMo Microservices v1.

* Config: ``POST /v1/customization/configs``. A 409 ``uq_customization_config`` means the name exists, maybe
  with other options (a second deployment, or a rerun after a config change, hits the unique constraint on
  namespace + name and the blueprint's job fails). We compare options
  (``custom_fields.flywheel_options_hash``, else the fields themselves): same → reuse; different → a new
  name versioned by the options hash.
* Job: deterministic ``name`` kept in ``custom_fields.flywheel_name``; looked up before creating, so a retried
  activity re-attaches to the job an earlier attempt created (one create per name). An ambiguous create
  (dropped connection / 5xx) is resolved by looking the name up again.
* Polling ``/v1/customization/jobs/{id}/status`` → progress dicts with the remote job id, percentage_done,
  epochs_completed, steps_completed and the last status logs. "The training job is pending",
  NotEnoughResources, or pending past ``pending_timeout_s`` → ``PlatformError(error_type="InfrastructureError")``.
* After ``completed``, wait until the adapter is listed by the NIM's ``/v1/models``.
* Cancel: ``POST /v1/customization/jobs/{id}/cancel`` (the seed's ``/v1/customizations/...`` is a 404).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from flywheel.platforms.nemo_v1.client import NemoV1Clients, is_ambiguous, status_error, to_platform_error
from flywheel.platforms.nemo_v1.jobs import (
    cancel_if_live,
    create_once,
    find_named_job,
    log_messages,
    poll_job,
    reusable,
)
from flywheel.progress import TrainingProgress
from flywheel.types import CustomizationResult, CustomizationSpec, PlatformError, ProgressFn

log = logging.getLogger(__name__)
NAME_FIELD = "flywheel_name"
HASH_FIELD = "flywheel_options_hash"


def config_options(spec: CustomizationSpec) -> dict[str, Any]:
    cc = spec.nim.customizer_configs
    if cc is None:
        raise PlatformError(f"{spec.nim.model_name}: customization_enabled is false (no customizer_configs)",
                            retryable=False)
    return {
        "target": cc.target or spec.nim.model_name,
        "max_seq_length": cc.max_seq_length,
        "training_precision": cc.training_precision,
        "training_options": [{
            "training_type": spec.training.training_type,
            "finetuning_type": spec.training.finetuning_type,
            "num_gpus": cc.gpus,
            "num_nodes": cc.num_nodes,
            "tensor_parallel_size": cc.tensor_parallel_size,
            "data_parallel_size": cc.data_parallel_size,
            "use_sequence_parallel": cc.use_sequence_parallel,
            "micro_batch_size": cc.micro_batch_size,
        }],
    }


def options_hash(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]


def base_config_name(spec: CustomizationSpec) -> str:
    return f"{spec.nim.model_name.split('/')[-1]}@v1.0.0+dfw"


def same_options(existing: dict[str, Any], options: dict[str, Any], digest: str) -> bool:
    """Does an existing config (raw dict) carry the options we want?"""
    recorded = (existing.get("custom_fields") or {}).get(HASH_FIELD)
    if recorded:
        return recorded == digest
    target = existing.get("target")
    target_name = (target if isinstance(target, str)
                   else (target or {}).get("name") and f"{target.get('namespace')}/{target.get('name')}")
    if existing.get("max_seq_length") != options["max_seq_length"]:
        return False
    if target_name and target_name != options["target"]:
        return False
    want = options["training_options"][0]
    for opt in existing.get("training_options") or []:
        if all(opt.get(k) == want[k] for k in ("training_type", "finetuning_type", "num_gpus", "micro_batch_size")):
            return True
    return False


def customized_model_name(spec: CustomizationSpec, namespace: str) -> str:
    return spec.output_model if "/" in spec.output_model else f"{namespace}/{spec.output_model}"


class CustomizationV1:
    def __init__(self, clients: NemoV1Clients) -> None:
        self.c = clients

    def job_uri(self, job_id: str) -> str:
        return f"{self.c.nemo_url}/v1/customization/jobs/{job_id}"

    # -- configs ---------------------------------------------------------------------------------
    async def ensure_config(self, spec: CustomizationSpec) -> str:
        """Create (or reuse) the customization config; returns ``namespace/name``."""
        return await self.ensure_named_config(base_config_name(spec), config_options(spec))

    async def ensure_named_config(self, base_name: str, options: dict[str, Any]) -> str:
        """Create (or reuse) the config ``base_name`` with ``options`` (``target``, ``max_seq_length``,
        ``training_precision``, ``training_options``); another config under that name with other options
        makes it ``{base_name}-{hash}``. Returns ``namespace/name``."""
        digest = options_hash(options)
        ns = self.c.namespace
        for name in (base_name, f"{base_name}-{digest}"):
            try:
                await self.c.sdk_create.customization.configs.create(
                    name=name, namespace=ns, target=options["target"], max_seq_length=options["max_seq_length"],
                    training_precision=options["training_precision"], training_options=options["training_options"],
                    custom_fields={HASH_FIELD: digest}, description="flywheel customization config")
                log.info("created customization config %s/%s", ns, name)
                return f"{ns}/{name}"
            except Exception as exc:
                code = status_error(exc)
                if code != 409 and not is_ambiguous(exc):
                    raise to_platform_error(exc, f"create customization config {ns}/{name}") from exc
                try:
                    existing = await self.c.get_json(f"{self.c.nemo_url}/v1/customization/configs/{ns}/{name}")
                except PlatformError:
                    if code == 409:
                        raise
                    raise to_platform_error(exc, f"create customization config {ns}/{name}") from exc
                if same_options(existing, options, digest):
                    log.info("customization config %s/%s exists with the same options: reusing", ns, name)
                    return f"{ns}/{name}"
                log.info("customization config %s/%s exists with other options: versioning by hash", ns, name)
        raise PlatformError(f"customization config {ns}/{base_name}-{digest} exists with other options",
                            retryable=False)

    # -- jobs ------------------------------------------------------------------------------------
    async def find_job(self, name: str) -> dict[str, Any] | None:
        return await find_named_job(
            self.c.get_json, f"{self.c.nemo_url}/v1/customization/jobs?filter[namespace]={self.c.namespace}",
            name, NAME_FIELD)

    async def create_job(self, spec: CustomizationSpec, config: str) -> str:
        hp: dict[str, Any] = {
            "training_type": spec.training.training_type, "finetuning_type": spec.training.finetuning_type,
            "epochs": spec.training.epochs, "batch_size": spec.training.batch_size,
            "learning_rate": spec.training.learning_rate,
            "lora": {"adapter_dim": spec.lora.adapter_dim, "adapter_dropout": spec.lora.adapter_dropout},
        }
        if spec.lora.alpha is not None:
            hp["lora"]["alpha"] = spec.lora.alpha
        if spec.training.max_steps is not None:
            hp["max_steps"] = spec.training.max_steps
        return await create_once("customization", spec.name, lambda: self.c.sdk_create.customization.jobs.create(
            name=spec.name, namespace=self.c.namespace, config=config,
            dataset={"name": spec.train.name, "namespace": self.c.namespace},
            output_model=customized_model_name(spec, self.c.namespace), hyperparameters=hp,
            custom_fields={NAME_FIELD: spec.name}), self.find_job)

    async def customize(self, spec: CustomizationSpec, progress: ProgressFn | None,
                        cleanup_on_cancel) -> CustomizationResult:
        t0 = time.monotonic()
        existing = reusable("customization", spec.name, await self.find_job(spec.name))
        if existing:
            job_id = str(existing["id"])
        else:
            job_id = await self.create_job(spec, await self.ensure_config(spec))
        uri = self.job_uri(job_id)
        model = customized_model_name(spec, self.c.namespace)
        if progress:
            progress({"kind": "customization", "job_id": job_id, "nmp_uri": uri, "customized_model": model,
                      "status": "attached" if existing else "created"})
        timing = self.c.timing

        def describe(st: dict[str, Any]) -> dict[str, Any]:
            return TrainingProgress(progress=st.get("percentage_done"), epochs_completed=st.get("epochs_completed"),
                                    steps_completed=st.get("steps_completed"), loss=st.get("train_loss"),
                                    status_logs=log_messages(st.get("status_logs")), customized_model=model).details()

        try:
            final = await poll_job(kind="customization", job_id=job_id, nmp_uri=uri,
                                   fetch=lambda: self.c.get_json(f"{uri}/status"), describe=describe,
                                   interval_s=timing.poll_interval_s, timeout_s=timing.customization_timeout_s,
                                   pending_timeout_s=timing.pending_timeout_s, progress=progress)
            await self.c.wait_for_nim_model(model, timing.adapter_timeout_s, progress,
                                            {"kind": "customization", "job_id": job_id, "nmp_uri": uri})
        except asyncio.CancelledError:
            if cleanup_on_cancel():
                await self.cancel_job(job_id)
            raise
        except PlatformError as exc:
            if exc.error_type in ("InfrastructureError", "Timeout") and exc.details.get("status") != "failed":
                await self.cancel_job(job_id)  # don't leave it queued; a retry creates a fresh job
            raise
        return CustomizationResult(
            customized_model=model, adapter_uri=model, steps_completed=int(final.get("steps_completed") or 0),
            epochs_completed=int(final.get("epochs_completed") or 0), final_loss=final.get("train_loss"),
            nmp_uri=uri, details={"job_id": job_id, "config": None, "runtime_seconds": time.monotonic() - t0})

    async def cancel_job(self, job_id: str) -> None:
        try:
            await asyncio.shield(self.c.sdk.customization.jobs.cancel(job_id))
        except Exception as exc:  # noqa: BLE001 - best effort: it may already be terminal
            log.info("cancel customization job %s: %s", job_id, exc)

    async def cancel_by_name(self, name: str) -> bool:
        return await cancel_if_live(name, self.find_job, self.cancel_job)
