"""``GET /api/workloads/{workload_id}/promotions``: the promotion history of a workload (and client)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from flywheel.promotions import PromotionRecord, promotion_history

promotions_router = APIRouter(prefix="/api/workloads", tags=["promotions"])


class PromotionsResponse(BaseModel):
    workload_id: str
    client_id: str | None = None
    promotions: list[PromotionRecord]


@promotions_router.get("/{workload_id}/promotions", response_model=PromotionsResponse)
async def list_promotions(
    workload_id: str, request: Request, client_id: str | None = Query(None, max_length=200),
) -> PromotionsResponse:
    """Who promoted which candidate, when, from which job, with the gate's evidence; newest first."""
    store = request.app.state.flywheel.store()
    records = await asyncio.to_thread(promotion_history, store, workload_id, client_id)
    return PromotionsResponse(workload_id=workload_id, client_id=client_id, promotions=records)
