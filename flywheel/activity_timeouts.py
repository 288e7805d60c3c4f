"""Per-activity timeouts of a run (seconds): how long an attempt may take, how soon a silent worker is
declared lost (heartbeat), and how retries back off.

Defaults are for production. ``temporal.activity_timeouts`` in the settings replaces them for every run
the starter API or a schedule starts (field by field; unset fields keep these defaults): a cluster
that must notice a lost node sooner lowers the heartbeat timeouts there. Pure: no Temporal import.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ActivityTimeouts(BaseModel):
    # Strict like every config section (a typo fails at start); runs carrying it across versions of the
    # code still decode, because the Carried inputs around it drop unknown keys at every depth.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    prepare_start_to_close_s: int = 2 * 3600
    deploy_start_to_close_s: int = 2 * 3600
    deploy_heartbeat_s: int = 60
    evaluate_start_to_close_s: int = 12 * 3600
    evaluate_heartbeat_s: int = 120
    customize_start_to_close_s: int = 48 * 3600
    customize_heartbeat_s: int = 120  # heartbeats every 10 s; a dead worker is noticed within 2 min
    short_start_to_close_s: int = 300  # teardown, persist, report, aggregate, icl
    # Quick activities heartbeat on a timer: a worker that died during one is noticed within this many
    # seconds (the retry then runs elsewhere) instead of when short_start_to_close_s runs out. 0 = off.
    short_heartbeat_s: int = 30
    retry_initial_interval_s: float = 1.0
    retry_max_interval_s: float = 60.0
    max_attempts: int = 5  # quick activities; 0 = unlimited
    # Long activities (deploy, evaluate, customize) have NO attempt cap: every worker restart during a
    # 48-hour training costs one attempt. Their whole life (all attempts and the waits between) is bounded
    # by schedule-to-close instead.
    long_max_attempts: int = 0  # 0 = unlimited
    deploy_schedule_to_close_s: int = 24 * 3600
    evaluate_schedule_to_close_s: int = 3 * 24 * 3600
    customize_schedule_to_close_s: int = 7 * 24 * 3600
    # Stall: an attempt whose reported progress has not changed for this long fails (retryably, type
    # "Stalled") so a hung call is retried instead of heartbeating until start-to-close. 0 = never.
    deploy_stall_s: int = 3600
    evaluate_stall_s: int = 2 * 3600
    customize_stall_s: int = 6 * 3600
