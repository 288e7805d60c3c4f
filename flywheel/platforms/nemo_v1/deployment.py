"""NIM deployment through the Deployment Management Service (DMS) of NeMo Microservices v1.

* ``POST /v1/deployment/model-deployments`` (no SDK retries). A duplicate answers 500 "model deployment
  already exists" (or 409): that means "exists → reuse", not failure.
* Ready when ``status_details.status == "ready"`` (and the NIM lists the model); ``failed``/``cancelled`` →
  PlatformError with the DMS description; pending past the timeout → InfrastructureError.
* A model the NIM already serves (e.g. a base NIM deployed by the NIM Operator) is used as is, unmanaged:
  teardown leaves it alone. A customized model (LoRA adapter) is served by its base NIM: we only wait for it
  to show up in the NIM's ``/v1/models``.
* Teardown: ``DELETE /v1/deployment/model-deployments/{ns}/{name}``; 404 = already gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from typing import Any

from flywheel.config import NIMConfig
from flywheel.platforms.nemo_v1.client import NemoV1Clients, is_ambiguous, status_error, to_platform_error
from flywheel.progress import DeploymentProgress
from flywheel.types import Endpoint, PlatformError, ProgressFn

log = logging.getLogger(__name__)


def deployment_name(name: str) -> str:
    """DNS-1123-ish (lowercase alnum and '-', ≤ 63), deterministic."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "nim"
    if len(out) > 63 or out != name:
        out = f"{out[:54].strip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return out


def is_duplicate(exc: Exception) -> bool:
    code = status_error(exc)
    text = str(getattr(exc, "body", "") or exc).lower()
    return code == 409 or (code == 500 and "already exists" in text)


class DeploymentV1:
    def __init__(self, clients: NemoV1Clients) -> None:
        self.c = clients

    def _endpoint(self, nim: NIMConfig, dname: str, served: str, managed: bool, **details: Any) -> Endpoint:
        return Endpoint(deployment_name=dname, model_name=nim.model_name, served_model=served,
                        base_url=f"{self.c.nim_url}/v1",
                        details={"managed": managed, "namespace": self.c.namespace, **details})

    async def deploy(self, nim: NIMConfig, name: str, adapter_uri: str | None, progress: ProgressFn | None) -> Endpoint:
        timing = self.c.timing
        dname = deployment_name(name)
        if adapter_uri:
            await self.c.wait_for_nim_model(adapter_uri, timing.adapter_timeout_s, progress, {"kind": "deployment"})
            return self._endpoint(nim, dname, adapter_uri, managed=False, adapter=True)
        try:
            if nim.model_name in await self.c.nim_models():
                log.info("%s is already served by %s: using it unmanaged", nim.model_name, self.c.nim_url)
                return self._endpoint(nim, dname, nim.model_name, managed=False, predeployed=True)
        except PlatformError:
            pass  # NIM not up yet: deploy it
        await self._ensure_ready(dname, nim.model_name, lambda: self._create(nim, dname), progress)
        return self._endpoint(nim, dname, nim.model_name, managed=True)

    async def deploy_model(self, model: str, name: str, nim_deployment: dict[str, Any],
                           progress: ProgressFn | None) -> Endpoint:
        """Serve ``model`` (e.g. a fully fine-tuned embedding model in the Entity Store) with the NIM image in
        ``nim_deployment``; managed (torn down by :meth:`teardown`). Idempotent by ``name``."""
        dname = deployment_name(name)

        async def create() -> None:
            await self._create_config(dname, {"model": model, "nim_deployment": nim_deployment})

        await self._ensure_ready(dname, model, create, progress)
        return Endpoint(deployment_name=dname, model_name=model, served_model=model, base_url=f"{self.c.nim_url}/v1",
                        details={"managed": True, "namespace": self.c.namespace})

    async def _ensure_ready(self, dname: str, model: str, create, progress: ProgressFn | None) -> None:
        """Create the deployment unless it exists, wait until DMS says ready, then until the NIM lists ``model``."""
        timing = self.c.timing
        ns = self.c.namespace
        url = f"{self.c.nemo_url}/v1/deployment/model-deployments/{ns}/{dname}"
        existing = await self._get(url)
        if existing is None:
            await create()
        deadline = time.monotonic() + timing.deploy_timeout_s
        while True:
            dep = await self._get(url)
            if dep is None:
                raise PlatformError(f"deployment {ns}/{dname} disappeared while waiting for it",
                                    details={"deployment": dname})
            details = dep.get("status_details") or {}
            state = str(details.get("status") or "")
            info = DeploymentProgress(kind="deployment", deployment=dname, status=state,
                                      message=details.get("description")).details()
            if state not in ("created", "pending", "running", "ready", "failed", "cancelled", "cancelling",
                             "completed"):
                info["unknown_state"] = state
            if progress:
                progress(info)
            if state == "ready":
                break
            if state in ("failed", "cancelled", "completed"):
                raise PlatformError(f"deployment {ns}/{dname} of {model} {state}: "
                                    f"{details.get('description') or 'no description'}",
                                    retryable=False, error_type="DeploymentFailed",
                                    details={"deployment": dname, "status": state})
            if time.monotonic() > deadline:
                raise PlatformError(f"deployment {ns}/{dname} not ready within {timing.deploy_timeout_s:.0f}s "
                                    f"(state {state!r})",
                                    error_type="InfrastructureError", details={"deployment": dname, "status": state})
            await asyncio.sleep(timing.poll_interval_s)
        await self.c.wait_for_nim_model(model, timing.adapter_timeout_s, progress,
                                        {"kind": "deployment", "deployment": dname})

    async def _get(self, url: str) -> dict[str, Any] | None:
        try:
            return await self.c.get_json(url)
        except PlatformError as exc:
            if exc.details.get("status_code") == 404:
                return None
            raise

    async def _create(self, nim: NIMConfig, dname: str) -> None:
        image = (nim.model_name if not nim.registry_base
                 else f"{nim.registry_base.rstrip('/')}/{nim.model_name.split('/')[-1]}")
        nim_deployment: dict[str, Any] = {"image_name": image, "image_tag": nim.tag or "latest", "gpu": nim.gpus,
                                          "additional_envs": {"NIM_GUIDED_DECODING_BACKEND": "fast_outlines"}}
        if nim.pvc_size:
            nim_deployment["pvc_size"] = nim.pvc_size
        await self._create_config(dname, {"model": nim.model_name, "nim_deployment": nim_deployment})

    async def _create_config(self, dname: str, config: dict[str, Any]) -> None:
        try:
            await self.c.sdk_create.deployment.model_deployments.create(
                name=dname, namespace=self.c.namespace, config=config)
        except Exception as exc:
            if is_duplicate(exc):
                log.info("deployment %s already exists (%s): reusing it", dname, status_error(exc))
                return
            if is_ambiguous(exc):
                log.warning("deployment create for %s was ambiguous (%s); polling for it", dname, exc)
                return
            raise to_platform_error(exc, f"create deployment {dname}") from exc

    async def teardown(self, endpoint: Endpoint) -> None:
        """Delete a deployment we created. A placeholder (``status == "unknown"``: the workflow recorded the
        name it asked for before a deploy that was cancelled or failed) carries the workflow's name, not
        the DMS one: map it with :func:`deployment_name` and delete whatever the deploy may have created."""
        placeholder = endpoint.status == "unknown"
        if not placeholder and not endpoint.details.get("managed"):
            return
        ns = endpoint.details.get("namespace") or self.c.namespace
        dname = deployment_name(endpoint.deployment_name) if placeholder else endpoint.deployment_name
        try:
            await self.c.sdk.deployment.model_deployments.delete(dname, namespace=ns)
        except Exception as exc:
            if status_error(exc) != 404:
                raise to_platform_error(exc, f"delete deployment {ns}/{dname}") from exc
