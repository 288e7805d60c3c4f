"""The reviewer's page (/ui): shells, fragments rendered from API documents, escaping, 404s.

Documents reach the fragments the way the page's script sends them: read from the JSON API first.
"""

from __future__ import annotations

import base64
import re
import uuid

from flywheel.jobdoc import DatasetDoc, EvaluationDoc, JobDocument, NimDoc, RunStatus, Stage
from starter.ui import CSP, MAX_RENDER_BYTES

HOSTILE = '<script>alert("x")</script>'
HOSTILE_IMG = "<img src=x onerror=alert(1)>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def job_id() -> str:
    return uuid.uuid4().hex[:24]


def scored(eval_type: str, accuracy: float, p50: float, ci: list[float] | None = None) -> EvaluationDoc:
    return EvaluationDoc(
        eval_type=eval_type, num_records=40, latency_p50_ms=p50, latency_p95_ms=p50 * 2,
        scores={"function_name": accuracy + 0.02, "function_name_and_args_accuracy": accuracy},
        confidence_intervals={"function_name_and_args_accuracy": ci or [accuracy - 0.1, accuracy + 0.05]},
        finished_at="2026-01-01T00:00:00Z",
    )


def reviewed_doc(workload_id: str, model: str = "cand-a", **extra) -> JobDocument:
    return JobDocument(
        id=job_id(), workload_id=workload_id, client_id="c1", status=RunStatus.running, stage=Stage.awaiting_review,
        started_at="2026-01-01T00:00:00Z", num_records=87,
        nims=[NimDoc(model_name=model, cost_per_1k_requests=0.42,
                     evaluations=[scored("base-eval", 0.81, 120.0), scored("icl-eval", 0.93, 180.0)])],
        datasets=[DatasetDoc(name="eval-set", num_records=40), DatasetDoc(name="train-set", num_records=47)],
        curation={"kept": 87, "dropped": {"invalid": 3, "duplicate": 5}},
        **extra,
    )


async def render_stored(api, jobstore, doc: JobDocument):
    """Store the document, read it through the API, render it as the page does."""
    jobstore.put(doc)
    fetched = await api.get(f"/api/jobs/{doc.id}")
    assert fetched.status_code == 200, fetched.text
    return await api.post("/ui/render/job", json=fetched.json())


def assert_no_raw_markup(html: str, *strings: str) -> None:
    for s in strings:
        assert s not in html, f"{s!r} reached the page unescaped"


# ---------------------------------------------------------------------------------------------- shells


async def test_pages_are_html_shells_with_a_strict_csp(api):
    for path, page in (("/ui", "jobs"), ("/ui/schedules", "schedules"), (f"/ui/jobs/{job_id()}", "job")):
        response = await api.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        html = response.text
        assert f'data-page="{page}"' in html
        # Scripts only from the app (the CSP would block inline ones anyway); nothing from another origin.
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
        assert scripts and all('src="/ui/static/' in attrs and body == "" for attrs, body in scripts)
        assert not re.search(r'(src|href)="(https?:)?//', html)
        assert "style=" not in html


async def test_static_files_are_served_and_others_are_404(api):
    js = await api.get("/ui/static/ui.js")
    css = await api.get("/ui/static/ui.css")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "Authorization" in js.text and "Bearer " in js.text and "sessionStorage" in js.text
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for name in ("../api.py", "ui.py", "nope.js"):
        response = await api.get(f"/ui/static/{name}")
        assert response.status_code == 404, name
        assert "detail" in response.json()


async def test_malformed_job_id_is_an_html_404_and_unknown_paths_are_404(api):
    response = await api.get("/ui/jobs/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "&lt;img src=x onerror=alert(1)&gt;" in response.text
    assert_no_raw_markup(response.text, HOSTILE_IMG)
    missing = await api.get("/ui/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}


async def test_unknown_job_is_a_404_from_the_api_the_page_reads(api):
    unknown = job_id()
    assert (await api.get(f"/ui/jobs/{unknown}")).status_code == 200  # the shell; its data comes from the API
    response = await api.get(f"/api/jobs/{unknown}")
    assert response.status_code == 404 and unknown in response.json()["detail"]


async def test_filter_values_are_escaped_in_the_jobs_shell(api):
    response = await api.get("/ui", params={"workload_id": '"><script>alert(1)</script>', "status": "bogus"})
    assert response.status_code == 200
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in response.text
    assert_no_raw_markup(response.text, "<script>alert(1)")
    assert '<option value="bogus"' not in response.text and 'value="running"' in response.text


# ---------------------------------------------------------------------------------------------- job fragment


async def test_job_fragment_shows_results_gate_report_plot_curation_and_datasets(api, jobstore):
    gate = {
        "metric": "function_name_and_args_accuracy", "margin": 0.05, "confidence": 0.95, "threshold": 0.95,
        "reference": {"model_name": "prod-70b", "price_per_1k_tokens": 0.01},
        "verdicts": [
            {"model_name": "cand-a", "eval_type": "base-eval", "verdict": "fail", "agreement": 0.81, "n": 40,
             "interval": [0.66, 0.9], "records_needed": None,
             "constraints": [{"name": "latency_p95", "status": "pass", "value": 240.0, "limit": 2000.0,
                              "reason": "p95 240 ms is within 2000 ms"}],
             "reason": "cand-a base-eval fails: its upper bound 0.900 is below 0.950."},
            {"model_name": "cand-a", "eval_type": "icl-eval", "verdict": "inconclusive", "agreement": 0.93,
             "n": 40, "interval": [0.8, 0.98], "records_needed": 610,
             "reason": "cand-a icl-eval is inconclusive: about 610 eval records would decide."},
        ],
        "paired": [{"a": "cand-a/icl-eval", "b": "cand-a/base-eval", "n_paired": 40, "p_value": 0.031,
                    "significant": True, "reason": "icl-eval agrees more often than base-eval (p=0.031)."}],
        "recommendation": None,
        "recommendation_reason": "No configuration passes yet.",
        "frontier": ["cand-a/base-eval", "cand-a/icl-eval"],
    }
    doc = reviewed_doc(unique("wl"), gate=gate)
    response = await render_stored(api, jobstore, doc)
    assert response.status_code == 200, response.text
    assert response.headers["content-security-policy"] == CSP
    html = response.text

    assert 'id="job-stage" class="badge status-awaiting_review">awaiting_review<' in html
    assert html.count('class="result-row"') == 3  # base, icl, customized (n/a)
    assert "0.930 [0.83, 0.98]" in html and "n/a (not customizable)" in html
    assert "0.42" in html and "180 ms" in html
    # Every verdict with its sentence, constraint and numbers; paired test; report-level fields.
    assert 'data-eval-type="base-eval" data-verdict="fail"' in html and 'class="verdict fail">fail<' in html
    assert 'class="verdict inconclusive">inconclusive<' in html
    assert "its upper bound 0.900 is below 0.950." in html
    assert "about 610 eval records would decide." in html and "records_needed=610" in html
    assert "p95 240 ms is within 2000 ms" in html and "interval=[0.660, 0.900]" in html
    assert "icl-eval agrees more often than base-eval (p=0.031)." in html
    assert "reference.model_name" in html and "prod-70b" in html and "No configuration passes yet." in html
    # The report's plot, inline.
    plot = re.search(r'<img id="plot"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert plot and base64.b64decode(plot.group(1)).startswith(PNG_MAGIC)
    # Curation counts (nested ones flattened) and datasets.
    assert re.search(r"<th>dropped.duplicate</th><td class=\"num\">5</td>", html)
    assert "<td>eval-set</td><td class=\"num\">40</td>" in html
    assert "Awaiting a reviewer" in html


async def test_job_fragment_shows_per_candidate_gate_verdicts(api, jobstore):
    doc = reviewed_doc(unique("wl"))
    doc.nims[0].gate = {"passed": False, "eval_type": "icl-eval", "metric": "function_name_and_args_accuracy",
                        "score": 0.93, "reasons": ["score 0.930 is below the minimum 0.950"]}
    html = (await render_stored(api, jobstore, doc)).text
    row = re.search(r'<tr class="gate-row"[^>]*>.*?</tr>', html, flags=re.S).group(0)
    assert 'data-model="cand-a" data-eval-type="icl-eval" data-verdict="fail"' in row
    assert "score 0.930 is below the minimum 0.950" in row and "score=0.930" in row
    # The results table marks the row the verdict was judged on.
    icl = re.search(r'<tr class="result-row" data-model="cand-a" data-eval-type="icl-eval">.*?</tr>', html, re.S)
    assert 'class="verdict fail">fail<' in icl.group(0)


async def test_job_fragment_says_when_no_gate_ran_and_shows_the_review(api, jobstore):
    doc = reviewed_doc(unique("wl"), review={"decision": "promoted", "model_name": "cand-a", "by": "Ada"})
    doc.stage, doc.status = Stage.promoted, RunStatus.completed
    html = (await render_stored(api, jobstore, doc)).text
    assert 'id="gate-none"' in html
    assert "<th>decision</th><td>promoted</td>" in html and "<th>by</th><td>Ada</td>" in html


async def test_user_controlled_strings_are_escaped_in_the_job_fragment(api, jobstore):
    doc = reviewed_doc(HOSTILE, model=HOSTILE_IMG, error=HOSTILE, review={"note": HOSTILE_IMG},
                       report_uri='javascript:alert(1)"><b>x</b>')
    doc.client_id = HOSTILE_IMG
    doc.curation[HOSTILE] = 1
    doc.datasets.append(DatasetDoc(name=HOSTILE_IMG, num_records=1, nmp_uri=HOSTILE))
    # eval_type is an enum the document itself refuses to hold markup in; free-text gate fields carry it instead.
    doc.nims[0].gate = {"verdict": HOSTILE, "reasons": [HOSTILE_IMG], "eval_type": "icl-eval", "metric": HOSTILE,
                        HOSTILE: HOSTILE}
    response = await render_stored(api, jobstore, doc)
    assert response.status_code == 200, response.text
    html = response.text
    assert_no_raw_markup(html, HOSTILE, HOSTILE_IMG, "<b>x</b>", '"><b>')
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'class="verdict other"' in html  # an unknown verdict never becomes a class name


async def test_render_rejects_a_bad_document_naming_the_field(api):
    response = await api.post("/ui/render/job", json={"id": "x", "workload_id": "w"})
    assert response.status_code == 422 and "client_id" in response.json()["detail"]
    response = await api.post("/ui/render/job", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "detail" in response.json()
    big = b" " * (MAX_RENDER_BYTES + 1)
    response = await api.post("/ui/render/job", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "too large" in response.json()["detail"]


# ---------------------------------------------------------------------------------------------- lists


async def test_jobs_fragment_renders_the_api_listing_with_links_and_pages(api):
    workload = unique("ui-list")
    created = [(await api.post("/api/jobs", json={"workload_id": workload, "client_id": f"c{i}"})).json()["id"]
               for i in range(3)]
    listing = (await api.get("/api/jobs", params={"workload_id": workload, "limit": 2})).json()
    html = (await api.post("/ui/render/jobs", json=listing)).text
    links = re.findall(r'href="/ui/jobs/([0-9a-f]{24})"', html)
    assert links == list(reversed(created))[:2]  # newest first, one page
    assert "jobs 1–2 of 3" in html and 'data-offset="2"' in html and "newer" not in html
    page2 = (await api.get("/api/jobs", params={"workload_id": workload, "limit": 2, "offset": 2})).json()
    html2 = (await api.post("/ui/render/jobs", json=page2)).text
    assert re.findall(r'href="/ui/jobs/([0-9a-f]{24})"', html2) == [created[0]]
    assert 'data-offset="0"' in html2 and "older" not in html2
    empty = (await api.post("/ui/render/jobs", json={"jobs": [], "total": 0, "offset": 0, "limit": 50})).text
    assert 'id="no-jobs"' in empty


async def test_jobs_and_schedules_fragments_escape_user_strings(api):
    listing = {"jobs": [{"id": "a" * 24, "workload_id": HOSTILE, "client_id": HOSTILE_IMG, "status": HOSTILE,
                         "datasets": [{"name": HOSTILE_IMG, "num_records": 2}], "error": HOSTILE}],
               "total": 1, "offset": 0, "limit": 50}
    html = (await api.post("/ui/render/jobs", json=listing)).text
    assert_no_raw_markup(html, HOSTILE, HOSTILE_IMG)
    assert 'class="badge status-other"' in html
    schedules = {"schedules": [{"schedule_id": '"><script>x</script>', "workload_id": HOSTILE,
                                "client_id": "c", "cron": ["0 3 * * *"], "paused": True, "note": HOSTILE_IMG,
                                "recent_runs": [HOSTILE], "next_runs": ["2026-01-02T03:00:00+00:00"]}]}
    html = (await api.post("/ui/render/schedules", json=schedules)).text
    assert_no_raw_markup(html, HOSTILE, HOSTILE_IMG, '"><script>')
    assert 'data-schedule-op="unpause"' in html and "2026-01-02 03:00:00 UTC" in html


async def test_schedules_fragment_renders_a_real_schedule_with_its_buttons(api):
    workload = unique("ui-sched")
    created = await api.post("/api/schedules", json={"workload_id": workload, "client_id": "c1", "cron": "0 3 * * *"})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    try:
        described = (await api.get(f"/api/schedules/{sid}")).json()
        html = (await api.post("/ui/render/schedules", json={"schedules": [described]})).text
        row = re.search(r'<tr class="schedule-row" data-schedule-id="([^"]+)">.*?</tr>', html, flags=re.S)
        assert row and row.group(1) == sid
        assert workload in row.group(0) and "<code>0 3 * * *</code>" in row.group(0) and "active" in row.group(0)
        assert f'data-schedule-op="pause" data-schedule-id="{sid}"' in row.group(0)
        assert f'data-schedule-op="trigger" data-schedule-id="{sid}"' in row.group(0)
        assert re.search(r"\d{4}-\d\d-\d\d 03:00:00 UTC", row.group(0))  # next run, formatted
    finally:
        await api.delete(f"/api/schedules/{sid}")
