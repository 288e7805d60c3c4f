"""DELETE of a finished job: the names of everything its run created, and the report of what went.

A run names what it creates after its run keys (:func:`flywheel.ids.run_key`): the splits under the
run's key, and per candidate (the key of its child workflow) the ICL dataset ``<cand>-icl``, mined
triplets ``<cand>-mine``, training ``<cand>-customize``, evaluations ``<cand>-<eval type>`` and
deployments ``<cand>-base`` / ``<cand>-customized``; the judge deployment is ``<workflow id>-judge``
and the report is filed under the job id. :class:`RunResources` carries those keys (built from the
job document by the starter) so each remover derives EXACT names from them: nothing is matched by
a loose prefix, so another run's things are never touched.

:class:`RemovalReport` is what the removers answer: each thing removed by kind, and each thing kept
with the reason. Removers are idempotent: what is already gone is simply not listed again.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from flywheel.vocabulary import ALL_EVAL_TYPES

# Kinds of things a DELETE reports (docs/api.md lists what each means).
DATA_DIR = "data_dir"                    # a directory or file under the worker's data_dir
ARTIFACT = "artifact"                    # an object in the artifact store (file:// or s3://)
DEPLOYMENT = "deployment"                # a model server / deployment left running
DATASET = "dataset"                      # a dataset entity on NeMo (v1 Entity Store)
DATASTORE_REPO = "datastore_repo"        # a NeMo v1 Datastore (HF API) dataset repo
FILESET = "fileset"                      # a NeMo Platform (v2) fileset
EVALUATION_JOB = "evaluation_job"        # a NeMo evaluation job (and its results)
CUSTOMIZATION_JOB = "customization_job"  # a NeMo customization job
CUSTOMIZED_MODEL = "customized_model"    # a fine-tuned model: NeMo model entity or the local adapter
MLFLOW_RUN = "mlflow_run"
MLFLOW_MODEL_VERSION = "mlflow_model_version"

PROMOTED = "promoted model version"


class CandidateResources(BaseModel):
    model_name: str
    keys: list[str] = Field(default_factory=list)  # the candidate's run keys (every child-id generation)
    customized_models: list[str] = Field(default_factory=list)  # output models the document recorded
    # The person promoted this candidate on its customized evaluation: its fine-tuned weights are the
    # champion's, so they stay (and say so).
    keep_customized: bool = False


class RunResources(BaseModel):
    job_id: str
    workflow_id: str
    workload_id: str = ""
    client_id: str = ""
    run_key: str
    candidates: list[CandidateResources] = Field(default_factory=list)
    eval_types: list[str] = Field(default_factory=lambda: list(ALL_EVAL_TYPES))
    # Remote job URIs the document recorded (``.../jobs/<id>``), per candidate evaluation / customization.
    evaluation_job_uris: list[str] = Field(default_factory=list)
    customization_job_uris: list[str] = Field(default_factory=list)

    @property
    def candidate_keys(self) -> list[str]:
        return [k for c in self.candidates for k in c.keys]

    def dataset_names(self) -> list[str]:
        """Every dataset the run may have stored: its splits, the BEIR copy of a retrieval eval split (NeMo's
        retriever evaluation reads that shape), and per candidate the ICL set and triplets."""
        per_candidate = (f"{k}-{what}" for k in self.candidate_keys for what in ("icl", "mine"))
        return [self.run_key, f"{self.run_key}-beir", *per_candidate]

    def evaluation_names(self) -> list[str]:
        return [f"{k}-{eval_type}" for k in self.candidate_keys for eval_type in self.eval_types]

    def customization_names(self, *, kept: bool | None = None) -> list[str]:
        """``<cand>-customize`` per candidate; ``kept`` selects those whose weights stay (True) or go (False)."""
        return [f"{k}-customize" for c in self.candidates if kept is None or c.keep_customized == kept
                for k in c.keys]

    def deployment_names(self) -> list[str]:
        return [*(f"{k}-{what}" for k in self.candidate_keys for what in ("base", "customized")),
                f"{self.workflow_id}-judge"]


class Removed(BaseModel):
    kind: str
    name: str


class Kept(BaseModel):
    kind: str
    name: str
    reason: str


class RemovalReport(BaseModel):
    removed: list[Removed] = Field(default_factory=list)
    kept: list[Kept] = Field(default_factory=list)

    def remove(self, kind: str, names: Iterable[str] | str) -> RemovalReport:
        self.removed += [Removed(kind=kind, name=n) for n in ([names] if isinstance(names, str) else names)]
        return self

    def keep(self, kind: str, name: str, reason: str) -> RemovalReport:
        self.kept.append(Kept(kind=kind, name=name, reason=reason))
        return self

    def extend(self, other: RemovalReport) -> RemovalReport:
        self.removed += other.removed
        self.kept += other.kept
        return self

    def removed_lines(self) -> list[str]:
        return [f"{r.kind}: {r.name}" for r in self.removed]

    def kept_lines(self) -> list[str]:
        return [f"{k.kind}: {k.name} (kept: {k.reason})" for k in self.kept]

    def by_kind(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.removed:
            out.setdefault(r.kind, []).append(r.name)
        return out
