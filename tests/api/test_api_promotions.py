"""GET /api/workloads/{workload}/promotions: promotion history from the stored job documents."""

from __future__ import annotations

from flywheel.jobdoc import JobDocument, NimDoc, RunStatus, Stage
from tests.api.test_api import awaiting_review, closed_as, create_job, unique, wait_for


def _doc(job_id: str, workload: str, client: str, review: dict | None) -> JobDocument:
    return JobDocument(
        id=job_id, workload_id=workload, client_id=client, status=RunStatus.completed,
        stage=Stage.promoted if review and review.get("decision") == "promoted" else Stage.completed,
        nims=[NimDoc(model_name="cand-a", gate={"verdict": "pass", "passed": True, "eval_type": "icl-eval",
                                               "reasons": ["cand-a/icl-eval passes: ..."]})],
        gate={"recommendation": "cand-a/icl-eval", "recommendation_reason": "cheapest passing",
              "verdicts": [{"model_name": "cand-a", "eval_type": "icl-eval", "verdict": "pass"},
                           {"model_name": "cand-b", "eval_type": "base-eval", "verdict": "fail"}]},
        review=review,
    )


async def test_history_lists_promotions_newest_first_with_evidence(api, jobstore):
    workload = unique("wl")
    jobstore.put(_doc("a" * 24, workload, "c1", {"decision": "promoted", "model_name": "cand-a", "by": "ana",
                                                 "decided_at": "2026-12-01T10:00:00+00:00", "note": "cheaper"}))
    jobstore.put(_doc("b" * 24, workload, "c2", {"decision": "promoted", "model_name": "cand-a", "by": "bo",
                                                 "decided_at": "2026-12-02T10:00:00+00:00"}))
    jobstore.put(_doc("c" * 24, workload, "c1", {"decision": "rejected", "by": "ana"}))
    jobstore.put(_doc("d" * 24, workload, "c1", None))

    body = (await api.get(f"/api/workloads/{workload}/promotions")).json()
    assert [p["job_id"] for p in body["promotions"]] == ["b" * 24, "a" * 24]
    first = body["promotions"][1]
    assert (first["decided_by"], first["model_name"], first["client_id"], first["note"]) == ("ana", "cand-a", "c1",
                                                                                           "cheaper")
    assert first["evidence"]["verdict"] == "pass" and first["evidence"]["recommendation"] == "cand-a/icl-eval"
    assert [c["eval_type"] for c in first["evidence"]["configurations"]] == ["icl-eval"]

    only_c1 = (await api.get(f"/api/workloads/{workload}/promotions", params={"client_id": "c1"})).json()
    assert [p["job_id"] for p in only_c1["promotions"]] == ["a" * 24]
    assert (await api.get(f"/api/workloads/{unique('none')}/promotions")).json()["promotions"] == []


async def test_a_promotion_through_the_api_appears_in_the_history(api):
    workload = unique("wl")
    job_id = await create_job(api, workload_id=workload)
    await wait_for(api, job_id, awaiting_review)
    assert (await api.post(f"/api/jobs/{job_id}/promote", json={"model_name": "cand-b"})).status_code == 200
    await wait_for(api, job_id, closed_as("completed"))
    history = (await api.get(f"/api/workloads/{workload}/promotions")).json()["promotions"]
    assert [(p["job_id"], p["model_name"]) for p in history] == [(job_id, "cand-b")]
