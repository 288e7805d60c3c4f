"""The typed errors of the job service; the API maps each to an HTTP status (``starter/api.py``)."""

from __future__ import annotations


class JobError(Exception):
    """Base of the typed errors the API maps to HTTP statuses."""


class JobNotFoundError(JobError):
    """No such job (404)."""


class JobAlreadyFinishedError(JobError):
    """The job has finished; it cannot be cancelled (400)."""


class JobStillRunningError(JobError):
    """The job is still running; it cannot be deleted (400)."""


class JobPromotedError(JobError):
    """The job's candidate was promoted: the promotion history reads its document, so it is kept (409)."""


class ReviewRejectedError(JobError):
    """The workflow refused a promote/reject update (409); the message is the validator's."""


class InvalidJobRequestError(JobError):
    """The request cannot start a job (bad override, unknown config_name, unknown job_type) (422)."""


class TemporalUnavailableError(JobError):
    """Temporal did not answer (503)."""
