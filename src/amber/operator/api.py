"""Amber's custom resources (``amber.dev/v1alpha1``): their typed specs and statuses.

``crds.py`` turns these models into CustomResourceDefinitions; the operator and the CLI parse
objects with ``models.parse``. Field documentation lives here, once, and reaches users through
``kubectl explain``. docs/operator.md describes the kinds for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from amber.operator.models import Doc, Enum, Free, Minimum, Pattern
from amber.util import durations

GROUP = "amber.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DURATION = Pattern(durations.PATTERN, "a duration such as 90s, 30m, 24h or 7d")
NAME = Pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "a Kubernetes object name")
CONSISTENCY = Pattern(r"^(auto|none|crash|logical|crash,logical|logical,crash)$",
                      "auto, crash, logical, crash,logical or none")

#: Phases of Backup, Restore and Drill (``status.phase``).
PENDING, RUNNING, COMPLETED, PARTIAL, FAILED = ("Pending", "Running", "Completed",
                                                "PartiallyFailed", "Failed")
TERMINAL = (COMPLETED, PARTIAL, FAILED)
PHASES = (PENDING, RUNNING, COMPLETED, PARTIAL, FAILED)


# -- shared parts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SecretRef:
    name: Annotated[str, Doc("The Secret's name."), NAME]
    namespace: Annotated[str | None, Doc(
        "Its namespace; default: the operator's namespace.")] = None


@dataclass(frozen=True)
class Requirement:
    key: Annotated[str, Doc("The label key.")]
    operator: Annotated[str, Doc("How the key's value is compared."),
                        Enum("In", "NotIn", "Exists", "DoesNotExist")]
    values: Annotated[list[str], Doc("Values for In and NotIn.")] = field(default_factory=list)


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector; empty selects everything."""

    match_labels: Annotated[dict[str, str], Doc("Labels that must all be present.")] = field(
        default_factory=dict)
    match_expressions: Annotated[list[Requirement], Doc(
        "Requirements that must all hold.")] = field(default_factory=list)


@dataclass(frozen=True)
class Condition:
    """A status condition in the shape of metav1.Condition."""

    type: Annotated[str, Doc("Ready, Valid, Succeeded, ...")]
    status: Annotated[str, Doc("True, False or Unknown."), Enum("True", "False", "Unknown")]
    reason: Annotated[str, Doc("A CamelCase word for programs.")] = ""
    message: Annotated[str, Doc("One line for people.")] = ""
    last_transition_time: Annotated[str | None, Doc("When status last changed.")] = None
    observed_generation: Annotated[int | None, Doc(
        "The metadata.generation the condition was set for.")] = None


@dataclass(frozen=True)
class ScheduleSpec:
    cron: Annotated[str, Doc(
        "Five-field cron expression (minute hour day-of-month month day-of-week) or a macro "
        "such as @daily, in wall-clock time of timeZone.")]
    time_zone: Annotated[str, Doc(
        "IANA time zone, e.g. Europe/Berlin; DST changes are handled as docs/operator.md "
        "says.")] = "UTC"


# -- BackupLocation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackupLocationSpec:
    """Where backups are stored: one Amber repository."""

    url: Annotated[str, Doc(
        "The repository location, as `amber --repo` takes it: s3://bucket/prefix?endpoint=..., "
        "file:///path or a path on the nodes.")]
    credentials_secret: Annotated[SecretRef | None, Doc(
        "The Secret with the repository passphrase (key `password`) and, for s3://, the "
        "access keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).")] = None
    immutable: Annotated[bool, Doc(
        "The location keeps objects immutable (Object Lock, append-only); recorded for "
        "status and 3-2-1.")] = False
    medium: Annotated[str | None, Doc("Storage medium, for 3-2-1 (default from the URL)."),
                      Enum("disk", "object", "tape", "other")] = None
    off_site: Annotated[bool, Doc("This location is off-site (another region or site).")] = False
    maintenance: Annotated[ScheduleSpec | None, Doc(
        "When data no backup needs any more is pruned (default: daily at 03:00 UTC). An "
        "append-only or immutable location is pruned by its owner, not here.")] = None
    suspend_maintenance: Annotated[bool, Doc("Never prune this location from here.")] = False


#: When a location's maintenance runs unless it says otherwise.
DEFAULT_MAINTENANCE = ScheduleSpec(cron="0 3 * * *", time_zone="UTC")


@dataclass(frozen=True)
class LocationStatus:
    conditions: list[Condition] = field(default_factory=list)
    observed_generation: int | None = None
    last_maintenance_time: Annotated[str | None, Doc(
        "The schedule firing the last maintenance was started for.")] = None
    next_maintenance_time: str | None = None
    last_maintenance_result: Annotated[str | None, Doc(
        "What the last maintenance did, one line.")] = None


# -- BackupPolicy --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicySelector:
    """Which applications a policy protects; all fields empty: every application."""

    namespaces: Annotated[list[str], Doc("These namespaces (names).")] = field(
        default_factory=list)
    namespace_selector: Annotated[LabelSelector | None, Doc(
        "Namespaces whose labels match.")] = None
    application_selector: Annotated[LabelSelector | None, Doc(
        "Applications whose workloads' labels match.")] = None
    exclude_namespaces: Annotated[list[str], Doc("Never these namespaces.")] = field(
        default_factory=list)


@dataclass(frozen=True)
class Retention:
    """Which backups to keep (grandfather-father-son), per application; the newest of each
    period is kept. Unset fields keep nothing by that rule; all unset keeps everything."""

    last: Annotated[int | None, Doc("The newest N backups."), Minimum(0)] = None
    hourly: Annotated[int | None, Doc("One per hour for N hours."), Minimum(0)] = None
    daily: Annotated[int | None, Doc("One per day for N days."), Minimum(0)] = None
    weekly: Annotated[int | None, Doc("One per ISO week for N weeks."), Minimum(0)] = None
    monthly: Annotated[int | None, Doc("One per month for N months."), Minimum(0)] = None
    yearly: Annotated[int | None, Doc("One per year for N years."), Minimum(0)] = None


@dataclass(frozen=True)
class PolicyDrill:
    """A recovery rehearsal on a schedule: the latest backup of each application restored into
    scratch namespaces, checked, timed and removed."""

    schedule: Annotated[ScheduleSpec, Doc("When drills run.")]
    checks: Annotated[list[Free], Doc(
        "Checks after the restore, as in an `amber drill --checks` file (docs/drills.md).")] = (
        field(default_factory=list))
    timeout: Annotated[str, Doc("How long restored workloads may take to be ready."),
                       DURATION] = "10m"


@dataclass(frozen=True)
class BackupPolicySpec:
    """What to protect, how, how often, where, for how long; and how to prove it restores."""

    location: Annotated[str, Doc("The BackupLocation backups go to."), NAME]
    selector: Annotated[PolicySelector, Doc("The applications protected.")] = field(
        default_factory=PolicySelector)
    schedule: Annotated[ScheduleSpec | None, Doc(
        "When backups run; without one, only a new application's first backup runs.")] = None
    consistency: Annotated[str, Doc(
        "auto, crash, logical, crash,logical or none (docs/cli.md)."), CONSISTENCY] = "auto"
    retention: Annotated[Retention | None, Doc("Which backups to keep.")] = None
    copies: Annotated[list[str], Doc(
        "Further BackupLocations each backup is copied to (3-2-1).")] = field(
        default_factory=list)
    blueprints: Annotated[list[str], Doc(
        "ConfigMaps in the operator's namespace whose keys are blueprint files (NAME.yaml): "
        "they add to the built-in blueprints or replace those of the same name, for this "
        "policy's backups and drills (docs/internals/blueprints.md).")] = field(
        default_factory=list)
    rpo: Annotated[str | None, Doc(
        "Recovery point objective: the oldest the last good backup may be."), DURATION] = None
    drill: Annotated[PolicyDrill | None, Doc("Scheduled drills.")] = None
    suspend: Annotated[bool, Doc("Pause scheduling (running work finishes).")] = False


@dataclass(frozen=True)
class PolicyStatus:
    conditions: list[Condition] = field(default_factory=list)
    observed_generation: int | None = None
    applications: Annotated[int | None, Doc("Applications protected now.")] = None
    last_schedule_time: str | None = None
    next_schedule_time: str | None = None
    last_drill_time: str | None = None
    next_drill_time: str | None = None


# -- Backup, Restore, Drill ----------------------------------------------------------------------

@dataclass(frozen=True)
class BackupSpec:
    """One backup of applications in this object's namespace."""

    location: Annotated[str, Doc("The BackupLocation to write to."), NAME]
    application: Annotated[str | None, Doc(
        "The application (an id from `amber app list`); default: the whole namespace.")] = None
    selector: Annotated[str | None, Doc(
        "Only objects matching this label selector (and what they need), as `--selector`."
        )] = None
    consistency: Annotated[str, Doc("As in BackupPolicy."), CONSISTENCY] = "auto"
    tags: Annotated[list[str], Doc("Tags on the snapshot.")] = field(default_factory=list)
    copies: Annotated[list[str], Doc(
        "BackupLocations the snapshot is copied to once saved (3-2-1).")] = field(
        default_factory=list)
    blueprints: Annotated[list[str], Doc("As in BackupPolicy.")] = field(default_factory=list)
    policy: Annotated[str | None, Doc("The BackupPolicy that asked for it, if any.")] = None


@dataclass(frozen=True)
class Progress:
    bytes_done: int = 0
    bytes_total: int | None = None
    items_done: int = 0
    items_total: int | None = None


@dataclass(frozen=True)
class WorkStatus:
    """The status shared by Backup, Restore and Drill."""

    phase: Annotated[str | None, Doc("Pending, Running, Completed, PartiallyFailed, Failed."),
                     Enum(*PHASES)] = None
    conditions: list[Condition] = field(default_factory=list)
    observed_generation: int | None = None
    start_time: str | None = None
    completion_time: str | None = None
    worker: Annotated[str | None, Doc("The Job doing the work.")] = None
    progress: Progress | None = None
    snapshot: Annotated[str | None, Doc("The repository snapshot id.")] = None
    errors: Annotated[list[str], Doc("What went wrong, one line each.")] = field(
        default_factory=list)
    copied: Annotated[list[str], Doc(
        "BackupLocations that hold a copy of the snapshot.")] = field(default_factory=list)
    forgotten: Annotated[list[str], Doc(
        "Older backups the policy's retention removed after this one.")] = field(
        default_factory=list)
    result: Annotated[Free | None, Doc(
        "The document `amber ... -o json` prints for the same work.")] = None


@dataclass(frozen=True)
class RestoreSpec:
    """Restore a backup into this object's namespace."""

    backup: Annotated[str, Doc(
        "A Backup's name in this namespace, or a snapshot id (or latest) in `location`.")]
    location: Annotated[str | None, Doc(
        "The BackupLocation to read (default: the named Backup's).")] = None
    source_namespace: Annotated[str | None, Doc(
        "The namespace the backup holds, restored into this one (default: this one).")] = None
    application: Annotated[str | None, Doc("Only this application.")] = None
    storage_class_mapping: Annotated[dict[str, str], Doc(
        "Old storage class -> new.")] = field(default_factory=dict)
    existing: Annotated[str, Doc("What to do with objects that exist."),
                        Enum("skip", "update", "replace")] = "skip"


@dataclass(frozen=True)
class DrillSpec:
    """Restore a backup into scratch namespaces, check it, time it, remove it."""

    location: Annotated[str, Doc("The BackupLocation to read."), NAME]
    backup: Annotated[str, Doc("A snapshot id, or latest.")] = "latest"
    application: Annotated[str | None, Doc("Only this application.")] = None
    checks: Annotated[list[Free], Doc("As in PolicyDrill.")] = field(default_factory=list)
    timeout: Annotated[str, Doc("As in PolicyDrill."), DURATION] = "10m"
    blueprints: Annotated[list[str], Doc("As in BackupPolicy.")] = field(default_factory=list)
    policy: Annotated[str | None, Doc("The BackupPolicy that asked for it, if any.")] = None


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class DrillStatus(WorkStatus):
    recovery_seconds: Annotated[float | None, Doc(
        "Measured recovery time: restore start to every workload ready.")] = None
    checks: list[CheckResult] = field(default_factory=list)


# -- the kinds -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    name: str
    type: str
    json_path: str
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    """One custom resource kind: names, scope, spec and status models, printer columns."""

    kind: str
    plural: str
    namespaced: bool
    spec: type
    status: type
    short_names: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = Column("Age", "date", ".metadata.creationTimestamp")
_WORK_COLUMNS = (Column("Phase", "string", ".status.phase"),
                 Column("Snapshot", "string", ".status.snapshot"), _AGE,
                 Column("Worker", "string", ".status.worker", priority=1))

LOCATION = Kind("BackupLocation", "backuplocations", False, BackupLocationSpec, LocationStatus,
                ("abl",), (Column("URL", "string", ".spec.url"),
                           Column("Ready", "string", '.status.conditions[?(@.type=="Ready")]'
                                                     ".status"), _AGE))
POLICY = Kind("BackupPolicy", "backuppolicies", False, BackupPolicySpec, PolicyStatus,
              ("abp",), (Column("Location", "string", ".spec.location"),
                         Column("Schedule", "string", ".spec.schedule.cron"),
                         Column("Apps", "integer", ".status.applications"),
                         Column("Valid", "string", '.status.conditions[?(@.type=="Valid")]'
                                                   ".status"),
                         Column("Next", "string", ".status.nextScheduleTime", priority=1),
                         _AGE))
BACKUP = Kind("Backup", "backups", True, BackupSpec, WorkStatus, ("abk",),
              (Column("Application", "string", ".spec.application"), *_WORK_COLUMNS))
RESTORE = Kind("Restore", "restores", True, RestoreSpec, WorkStatus, ("arst",),
               (Column("Backup", "string", ".spec.backup"), *_WORK_COLUMNS))
DRILL = Kind("Drill", "drills", True, DrillSpec, DrillStatus, ("adr",),
             (Column("Application", "string", ".spec.application"),
              Column("Phase", "string", ".status.phase"),
              Column("RTO", "number", ".status.recoverySeconds"), _AGE))

KINDS = (LOCATION, POLICY, BACKUP, RESTORE, DRILL)
