"""DELETE of a job on the REAL NeMo Platform (v2): the run's evaluation job (with the fileset the Jobs service
made for it), its dataset filesets and a provider its teardown missed go; another run's fileset stays; a
second removal finds nothing and does not fail. ``nemo_platform`` lane (the services start from .venv-nemo)."""

from __future__ import annotations

import uuid

import pytest

from flywheel.config import Settings
from flywheel.platforms.nemo_v2 import NemoV2Platform, NemoV2Timing, entity_name, job_name
from flywheel.removal import CandidateResources, RunResources
from flywheel.types import EvalSpec
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.integration.test_nemo_v2 import CASES, record, responder

pytestmark = pytest.mark.nemo_platform

RUN = "wf-del"
CAND = f"{RUN}-cand-m"


async def test_remove_run_on_the_real_platform(nemo_platform):
    candidate = ScriptedOpenAI(models=["cand-model"], responder=responder).start()
    ws = f"fw{uuid.uuid4().hex[:8]}"
    settings = Settings(nmp_config={"nemo_base_url": nemo_platform, "nim_base_url": candidate.root_url,
                                    "nmp_namespace": ws}, nims=[{"model_name": "cand-model"}])
    platform = NemoV2Platform(settings, NemoV2Timing(poll_interval_s=1.0, eval_timeout_s=300, provider_timeout_s=120))
    resources = RunResources(job_id="j1", workflow_id=RUN, run_key=RUN,
                             candidates=[CandidateResources(model_name="cand-model", keys=[CAND])])
    rows = [record(q, exp) for q, (exp, _) in list(CASES.items())[:3]]
    try:
        refs = await platform.put_datasets(RUN, {"eval": rows})
        await platform.put_datasets(f"{CAND}-icl", {"icl": rows})
        await platform.put_datasets("wf-other", {"eval": rows})  # another run
        endpoint = await platform.deploy(settings.nims[0], f"{CAND}-base")  # never torn down: leaked
        spec = EvalSpec(name=f"{CAND}-base-eval", eval_type="base-eval", dataset=refs["eval"], endpoint=endpoint,
                        concurrency=1, max_retries=1, request_timeout_s=30)
        await platform.evaluate(spec)
        job = job_name(spec.name)
        job_fileset = (await platform._call("GET", platform.job_path(job))).json().get("fileset")

        report = await platform.remove_run(resources)

        assert report.by_kind() == {"evaluation_job": [f"{ws}/evaluate/{job}"],
                                    "fileset": [f"{ws}/{entity_name(RUN)}", f"{ws}/{entity_name(CAND + '-icl')}"],
                                    "deployment": [f"{ws}/{entity_name(CAND + '-base')}"]}
        files = f"/apis/files/v2/workspaces/{ws}/filesets"
        gone = [platform.job_path(job), f"{files}/{entity_name(RUN)}", f"{files}/{entity_name(CAND + '-icl')}",
                f"/apis/models/v2/workspaces/{ws}/providers/{entity_name(CAND + '-base')}"]
        if job_fileset:  # the Jobs service deletes the fileset it made for the job with the job
            gone.append(f"{files}/{job_fileset}")
        for path in gone:
            assert (await platform._call("GET", path, ok=(200, 404))).status_code == 404, path
        assert (await platform._call("GET", f"{files}/{entity_name('wf-other')}")).status_code == 200
        assert (await platform.remove_run(resources)).removed == []  # again: nothing left, no error
    finally:
        await platform.close()
        candidate.stop()
