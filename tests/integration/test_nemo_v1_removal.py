"""DELETE of a job on NeMo Microservices v1 (contract emulator): the run's datasets and Datastore repos, its
evaluation jobs, its customized model and a deployment its teardown missed go; its customization job stays
("not deletable": the v1 API has no DELETE for it); another run's things are untouched; a second removal
finds nothing left and does not fail. Fast, default lane."""

from __future__ import annotations

import pytest

from flywheel.config import Settings
from flywheel.platforms.nemo_v1 import NemoV1Platform
from flywheel.platforms.nemo_v1.deployment import deployment_name
from flywheel.platforms.nemo_v1.removal import NOT_DELETABLE
from flywheel.removal import PROMOTED, CandidateResources, RunResources
from flywheel.types import EvalSpec
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.integration.test_nemo_v1 import BASE, NS, TIMING, cust_spec, responder, rows

CAND = "wf-1-cand-m"


@pytest.fixture
def nim():
    server = ScriptedOpenAI(models=["judge"], responder=responder).start()
    yield server
    server.stop()


@pytest.fixture
def settings(emu, nim) -> Settings:
    return Settings(platform={"kind": "nemo_v1"},
                    nmp_config={"nemo_base_url": emu.url, "datastore_base_url": emu.url,
                                "nim_base_url": nim.root_url, "nmp_namespace": NS},
                    nims=[{"model_name": BASE, "customization_enabled": True, "tag": "1.8.3",
                           "customizer_configs": {"target": f"{BASE}@2.0"}}])


@pytest.fixture
async def platform(settings):
    p = NemoV1Platform(settings, TIMING)
    yield p
    await p.close()


async def _run(platform, settings, run: str, *, customize: bool):
    """What one run creates: splits, an ICL set, a deployment, an evaluation job (and a customization)."""
    cand = f"{run}-cand-m"
    refs = await platform.put_datasets(run, {"eval": rows(), "train": rows()})
    await platform.put_datasets(f"{cand}-icl", {"icl": rows()})
    endpoint = await platform.deploy(settings.nims[0], f"{cand}-base")  # never torn down: a leaked deployment
    result = await platform.evaluate(EvalSpec(name=f"{cand}-base-eval", eval_type="base-eval",
                                              dataset=refs["eval"], endpoint=endpoint))
    if customize:
        spec = cust_spec(settings, refs, name=f"{cand}-customize").model_copy(
            update={"output_model": f"customized-m@{run}"})
        await platform.customize(spec)
    return result


def resources(eval_uri: str, *, promoted: bool = False) -> RunResources:
    return RunResources(job_id="j1", workflow_id="wf-1", run_key="wf-1", evaluation_job_uris=[eval_uri],
                        candidates=[CandidateResources(model_name="m", keys=[CAND], keep_customized=promoted,
                                                       customized_models=["customized-m@wf-1"]),
                                    CandidateResources(model_name="never-ran", keys=["wf-1-cand-never-ran"])])


async def test_remove_run_deletes_what_the_run_created_and_keeps_what_v1_cannot_delete(platform, emu, settings):
    evaluated = await _run(platform, settings, "wf-1", customize=True)
    await _run(platform, settings, "wf-2", customize=False)  # another run
    eval_job = next(j for j in emu.jobs.values()
                    if j.kind == "evaluation" and j.body["custom_fields"]["flywheel_name"] == f"{CAND}-base-eval")
    cust_job = next(j for j in emu.jobs.values() if j.kind == "customization")
    assert f"{NS}/customized-m@wf-1" in emu.models and evaluated.nmp_uri.endswith(eval_job.id)

    report = await platform.remove_run(resources(evaluated.nmp_uri))

    assert report.by_kind() == {
        "dataset": [f"{NS}/wf-1", f"{NS}/{CAND}-icl"],
        "datastore_repo": [f"{NS}/wf-1", f"{NS}/{CAND}-icl"],
        "evaluation_job": [f"{eval_job.id} ({CAND}-base-eval)"],
        "customized_model": [f"{NS}/customized-m@wf-1"],
        "deployment": [f"{NS}/{deployment_name(f'{CAND}-base')}"],
    }
    assert [(k.kind, k.name, k.reason) for k in report.kept] == [("customization_job", cust_job.id, NOT_DELETABLE)]
    # The other run's things are all there; the run's are gone.
    assert set(emu.datasets) == {f"{NS}/wf-2", f"{NS}/wf-2-cand-m-icl"} and set(emu.repos) == set(emu.datasets)
    assert [j.body["custom_fields"]["flywheel_name"] for j in emu.jobs.values() if j.kind == "evaluation"] == \
        ["wf-2-cand-m-base-eval"]
    assert f"{NS}/customized-m@wf-1" not in emu.models and cust_job.id in emu.jobs
    assert emu.count("DELETE", r"/v1/customization/jobs/.*") == 0

    again = await platform.remove_run(resources(evaluated.nmp_uri))  # a retry / second clean-up
    assert again.removed == [] and [k.name for k in again.kept] == [cust_job.id]


async def test_a_promoted_customized_model_stays(platform, emu, settings):
    evaluated = await _run(platform, settings, "wf-1", customize=True)
    report = await platform.remove_run(resources(evaluated.nmp_uri, promoted=True))
    assert ("customized_model", f"{NS}/customized-m@wf-1", PROMOTED) in [(k.kind, k.name, k.reason)
                                                                          for k in report.kept]
    assert "customized_model" not in report.by_kind() and f"{NS}/customized-m@wf-1" in emu.models
    assert "evaluation_job" in report.by_kind()  # the rest of the run goes as usual


@pytest.mark.parametrize("uri", ["http://nemo/v1/evaluation/jobs/eval-1", "http://nemo/v1/evaluation/jobs/eval-1/"])
def test_job_id_from_recorded_uri(uri):
    from flywheel.platforms.nemo_v1.removal import job_id_from_uri

    assert job_id_from_uri(uri, "evaluation/jobs") == "eval-1"
    assert job_id_from_uri("http://nemo/v1/customization/jobs/c-1", "evaluation/jobs") is None
