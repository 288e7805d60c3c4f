"""What a promotion does: the MLflow champion alias and the signed webhook (flywheel.webhook)."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import heartbeat_on_a_timer
from workflows.models import ACT_DELIVER_WEBHOOK, ACT_REGISTER_CHAMPION, PromotionInput


@activity.defn(name=ACT_REGISTER_CHAMPION)
@heartbeat_on_a_timer
async def register_champion(inp: PromotionInput) -> dict[str, str]:
    """Register the promoted model in the MLflow registry and move the alias to it; {} when MLflow is off."""
    from flywheel.tracking import register_champion as register

    record = inp.record
    return await asyncio.to_thread(register, inp.doc, record["model_name"], record.get("evidence", {}).get("eval_type"),
                                   inp.settings.mlflow_config, inp.settings.promotion.mlflow_alias)


@activity.defn(name=ACT_DELIVER_WEBHOOK)
async def deliver_promotion_webhook(inp: PromotionInput) -> dict[str, int]:
    """One signed POST; a failure raises and Temporal retries until the configured deadline."""
    from flywheel.webhook import WebhookConfigError, deliver, promotion_payload

    cfg = inp.settings.promotion
    if not cfg.webhook_url:
        return {}
    try:
        result = await asyncio.to_thread(deliver, cfg.webhook_url, promotion_payload(inp.record),
                                         delivery_id=inp.doc.id, secret_env=cfg.webhook_secret_env,
                                         timeout_s=cfg.webhook_timeout_s)
    except WebhookConfigError as exc:
        raise ApplicationError(str(exc), type="ConfigError", non_retryable=True) from exc
    return {**result, "attempts": activity.info().attempt}
