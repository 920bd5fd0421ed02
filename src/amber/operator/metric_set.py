"""The metrics the operator exposes, defined in one place.

Everything the operator counts is defined by ``define``, and docs/operator-metrics.md lists the
same metrics; a test reads that table and compares it with what ``define`` registers, so
dashboards and alerts written from the docs match the scrape. A new metric goes here and in the
table, or the test fails.

Label values the operator must keep to a fixed set (``result``) are listed here as constants, so
callers do not spell them; a misspelt result would be a new series no alert looks at.
"""

from __future__ import annotations

import dataclasses

from amber.operator.metrics import Counter, Gauge, Histogram, Registry

#: Upper bounds (seconds) for backup, restore and drill durations: from a one-second backup of
#: a few objects to a six-hour copy of a large volume, about two buckets per doubling of scale.
DURATION_BUCKETS: tuple[float, ...] = (
    1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600,
)

BACKUP_RESULTS = ("completed", "partial", "failed")
RESTORE_RESULTS = ("completed", "partial", "failed")
DRILL_RESULTS = ("passed", "failed")


@dataclasses.dataclass(frozen=True)
class OperatorMetrics:
    """The operator's metric objects, by what they measure."""

    backups: Counter
    backup_duration: Histogram
    backup_bytes: Counter
    backup_last_success: Gauge
    rpo_target: Gauge
    rpo_breached: Gauge
    rpo_breaches: Counter
    restores: Counter
    restore_duration: Histogram
    drills: Counter
    drill_recovery: Gauge
    drill_duration: Histogram
    leader: Gauge
    applications_protected: Gauge
    applications_unprotected: Gauge
    workers_running: Gauge
    reconcile_errors: Counter


def define(registry: Registry) -> OperatorMetrics:
    """Register the operator's metrics in ``registry`` (once per registry)."""
    r = registry
    app = ("namespace", "application")
    return OperatorMetrics(
        backups=r.counter(
            "amber_backups_total",
            "Backups finished, by policy, namespace and result (completed, partial, failed).",
            ("policy", "namespace", "result")),
        backup_duration=r.histogram(
            "amber_backup_duration_seconds",
            "How long backups took, from start to the snapshot written, by policy.",
            ("policy",), DURATION_BUCKETS),
        backup_bytes=r.counter(
            "amber_backup_bytes_total",
            "Bytes read from applications by backups (before deduplication and compression).",
            ("policy", "namespace")),
        backup_last_success=r.gauge(
            "amber_backup_last_success_timestamp_seconds",
            "Unix time at which the application's last completed backup finished.",
            app),
        rpo_target=r.gauge(
            "amber_rpo_seconds",
            "The recovery point objective the policy sets for the application, in seconds.",
            (*app, "policy")),
        rpo_breached=r.gauge(
            "amber_rpo_breached",
            "1 while the application's last completed backup is older than its RPO, else 0.",
            (*app, "policy")),
        rpo_breaches=r.counter(
            "amber_rpo_breaches_total",
            "Times an application went from within its RPO to beyond it, by policy.",
            ("policy",)),
        restores=r.counter(
            "amber_restores_total",
            "Restores finished, by target namespace and result (completed, partial, failed).",
            ("namespace", "result")),
        restore_duration=r.histogram(
            "amber_restore_duration_seconds",
            "How long restores took, until claims were bound and workloads ready.",
            (), DURATION_BUCKETS),
        drills=r.counter(
            "amber_drills_total",
            "Restore drills finished, by policy, source namespace and result (passed, failed).",
            ("policy", "namespace", "result")),
        drill_recovery=r.gauge(
            "amber_drill_recovery_seconds",
            "Recovery time the application's last drill measured (restore until ready).",
            ("policy", *app)),
        drill_duration=r.histogram(
            "amber_drill_duration_seconds",
            "How long drills took, checks and clean-up included.",
            (), DURATION_BUCKETS),
        leader=r.gauge(
            "amber_operator_leader",
            "1 while this operator replica holds the leader lease, else 0."),
        applications_protected=r.gauge(
            "amber_applications_protected",
            "Applications a backup policy selects."),
        applications_unprotected=r.gauge(
            "amber_applications_unprotected",
            "Applications no backup policy selects."),
        workers_running=r.gauge(
            "amber_workers_running",
            "Backups, restores and drills this replica is running now."),
        reconcile_errors=r.counter(
            "amber_reconcile_errors_total",
            "Reconciliations that failed, by the kind of resource reconciled.",
            ("kind",)),
    )
