"""Leader election on a coordination.k8s.io/v1 Lease against a cluster (the sandbox, or
AMBER_TEST_KUBECONFIG's): one leader of two, hand-over on a clean stop, a dead leader replaced
only after its lease, lost races, renewals failing past the deadline, and never two leaders.

Each replica has a client of its own that the test can cut off (requests fail or hang, as on a
partitioned node), so the faults are the client's and the tests hold on a real cluster too. Every
test uses a Lease of its own in the module's namespace. Timing is short (lease 2 s, renewal
deadline 1.5 s, retry 0.2 s): bounds are asserted on the times the electors wrote into the
Lease (MicroTime, from this machine's clock) and the callbacks saw.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from amber.kube import errors
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.lease import LEASES, LeaderElector, LeaseConfig, micro_time
from amber.kube.objects import Obj
from amber.util.errors import UsageError
from polling import wait_for

LEASE = 2.0
RENEW = 1.5
RETRY = 0.2
TIMING = {"lease_seconds": LEASE, "renew_deadline": RENEW, "retry_period": RETRY}


def parse(micro: str) -> datetime:
    return datetime.strptime(micro, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier) / timedelta(seconds=1)


class Cuttable(Client):
    """A replica's own client of the test cluster. ``mode`` "error" makes every request fail
    at once (a 503), "hang" block until ``heal`` (then fail, as a timed-out request does),
    "forbidden" fail as RBAC would; ``before_replace`` runs before a PUT is sent."""

    def __init__(self, base: Client) -> None:
        super().__init__(base.config, qps=0)
        self.mode = ""
        self.unhang = threading.Event()
        self.before_replace: Callable[[Obj], None] | None = None
        self.gets = 0
        self.conflicts = 0
        #: The spec of every Lease this replica wrote, as the server stored it.
        self.written: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def _gate(self) -> None:
        if self.mode == "hang":
            self.unhang.wait()
            raise errors.Unreachable("cut off by the test (hung)")
        if self.mode == "error":
            raise errors.ServerError("cut off by the test", status=503)
        if self.mode == "forbidden":
            raise errors.Forbidden("leases is forbidden (the test)", status=403)

    def heal(self) -> None:
        self.mode = ""
        self.unhang.set()

    def get(self, res: APIResource, name: str, namespace: str | None = None) -> Obj:
        with self.lock:
            self.gets += 1
        self._gate()
        return super().get(res, name, namespace)

    def create(self, res: APIResource, obj: Obj, namespace: str | None = None) -> Obj:
        self._gate()
        made = super().create(res, obj, namespace)
        self.written.append(made["spec"])
        return made

    def replace(self, res: APIResource, obj: Obj, namespace: str | None = None) -> Obj:
        self._gate()
        if self.before_replace is not None:
            self.before_replace(obj)
        try:
            stored = super().replace(res, obj, namespace)
        except errors.Conflict:
            self.conflicts += 1
            raise
        self.written.append(stored["spec"])
        return stored


class Replica:
    """One operator replica: an elector on a ``Cuttable`` client, its ``run`` thread, and what
    its callbacks saw (with this machine's wall time)."""

    def __init__(self, base: Client, namespace: str, lease: str, identity: str) -> None:
        self.identity = identity
        self.client = Cuttable(base)
        self.started: list[datetime] = []
        self.stopped: list[datetime] = []
        self.error: BaseException | None = None
        self.elector = LeaderElector(
            self.client, LeaseConfig(namespace, lease, identity, **TIMING),
            on_started=lambda: self.started.append(datetime.now(UTC)),
            on_stopped=lambda: self.stopped.append(datetime.now(UTC)))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def leads(self) -> bool:
        return self.elector.is_leader

    def start(self) -> Replica:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"replica-{self.identity}")
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.elector.run(self._stop)
        except BaseException as e:  # the test asserts on it
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), f"{self.identity}: run did not return"
            self._thread = None


@pytest.fixture
def lease_name() -> str:
    return f"amber-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def replicas(client: Client, namespace: str, lease_name: str
             ) -> Iterator[Callable[[str], Replica]]:
    made: list[Replica] = []

    def make(identity: str) -> Replica:
        made.append(Replica(client, namespace, lease_name, identity))
        return made[-1]

    yield make
    for r in made:
        r.client.heal()
        r.stop()


def read(client: Client, namespace: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = client.get(LEASES, name, namespace)["spec"]
    return spec


def one_leader(*rs: Replica) -> Replica | None:
    leaders = [r for r in rs if r.leads]
    return leaders[0] if len(leaders) == 1 else None


def take_over(client: Client, namespace: str, name: str, holder: str) -> dict[str, Any]:
    """Write the Lease as another replica would that takes it (re-reading on a lost race)."""
    while True:
        lease = client.get(LEASES, name, namespace)
        now = micro_time(datetime.now(UTC))
        spec = dict(lease["spec"] or {})
        spec.update(holderIdentity=holder, leaseDurationSeconds=int(LEASE), acquireTime=now,
                    renewTime=now, leaseTransitions=spec.get("leaseTransitions", 0) + 1)
        try:
            stored: dict[str, Any] = client.replace(LEASES, {**lease, "spec": spec}, namespace)
            return stored
        except errors.Conflict:
            continue


def pair(replicas: Callable[[str], Replica]) -> tuple[Replica, Replica]:
    """Two replicas started together; (leader, follower) once one leads."""
    a, b = replicas("a").start(), replicas("b").start()
    leader = wait_for(lambda: one_leader(a, b), timeout=10, message="a leader")
    return leader, (b if leader is a else a)


def test_of_two_replicas_exactly_one_leads(replicas: Callable[[str], Replica], client: Client,
                                           namespace: str, lease_name: str) -> None:
    leader, follower = pair(replicas)
    # both raced to create the Lease: the loser read it again and follows; let it try 5 more times
    seen = follower.client.gets
    wait_for(lambda: follower.client.gets >= seen + 5, timeout=10, message="follower attempts")
    assert leader.leads and not follower.leads
    assert read(client, namespace, lease_name)["holderIdentity"] == leader.identity
    assert (len(leader.started), len(follower.started)) == (1, 0)
    assert not leader.stopped and leader.error is None and follower.error is None


def test_a_clean_stop_hands_over_within_two_retry_periods(
        replicas: Callable[[str], Replica], client: Client, namespace: str,
        lease_name: str) -> None:
    leader, follower = pair(replicas)
    transitions = read(client, namespace, lease_name)["leaseTransitions"]
    stopping = datetime.now(UTC)
    leader.stop()
    assert not leader.leads and len(leader.stopped) == 1 and leader.error is None
    assert leader.stopped[0] >= stopping
    wait_for(lambda: follower.leads, timeout=5, message="hand-over")
    spec = read(client, namespace, lease_name)
    assert spec["holderIdentity"] == follower.identity
    assert spec["leaseTransitions"] == transitions + 1
    assert seconds(parse(spec["acquireTime"]), stopping) < 2 * RETRY


def test_a_leader_that_dies_is_replaced_only_after_its_lease(
        replicas: Callable[[str], Replica], client: Client, namespace: str,
        lease_name: str) -> None:
    leader, follower = pair(replicas)
    leader.client.mode = "error"  # from now on it writes nothing: not even the release
    leader.stop()
    last_renewal = parse(leader.client.written[-1]["renewTime"])
    assert read(client, namespace, lease_name)["holderIdentity"] == leader.identity
    wait_for(lambda: follower.started, timeout=10, message="take-over")
    acquired = parse(read(client, namespace, lease_name)["acquireTime"])
    waited = seconds(acquired, last_renewal)
    assert LEASE <= waited < LEASE + 1.0
    assert len(follower.started) == 1 and follower.started[0] >= acquired


def test_a_conflicting_write_makes_the_loser_not_lead(
        replicas: Callable[[str], Replica], client: Client, namespace: str,
        lease_name: str) -> None:
    now = micro_time(datetime.now(UTC))
    client.create(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"name": lease_name},
                           "spec": {"holderIdentity": "", "leaseDurationSeconds": 1,
                                    "acquireTime": now, "renewTime": now,
                                    "leaseTransitions": 3}}, namespace)
    replica = replicas("a")
    intruded: list[dict[str, Any]] = []

    def intrude(_: Obj) -> None:  # another replica's write lands between its GET and PUT
        if not intruded:
            intruded.append(take_over(client, namespace, lease_name, "intruder")["spec"])

    replica.client.before_replace = intrude
    replica.start()
    wait_for(lambda: replica.client.conflicts == 1, timeout=5, message="the lost race")
    seen = replica.client.gets
    wait_for(lambda: replica.client.gets >= seen + 2, timeout=5, message="later attempts")
    assert not replica.leads and not replica.started
    assert read(client, namespace, lease_name)["holderIdentity"] == "intruder"
    # the intruder never renews: its lease runs out by the replica's clock, then it takes over
    wait_for(lambda: replica.leads, timeout=10, message="take-over from the intruder")
    spec = read(client, namespace, lease_name)
    assert spec["leaseTransitions"] == 5
    assert seconds(parse(spec["acquireTime"]), parse(intruded[0]["renewTime"])) >= LEASE


def test_a_leader_that_sees_another_holder_stops_at_once(
        replicas: Callable[[str], Replica], client: Client, namespace: str,
        lease_name: str) -> None:
    leader = replicas("a").start()
    wait_for(lambda: leader.leads, timeout=10, message="a leader")
    taken = parse(take_over(client, namespace, lease_name, "intruder")["spec"]["renewTime"])
    wait_for(lambda: leader.stopped, timeout=5, message="on_stopped")
    assert not leader.leads and len(leader.stopped) == 1
    assert seconds(leader.stopped[0], taken) < 3 * RETRY  # its next renewal, not its deadline


@pytest.mark.parametrize("mode", ["error", "hang"])
def test_a_leader_that_cannot_renew_stops_before_its_lease_expires(
        replicas: Callable[[str], Replica], client: Client, namespace: str, lease_name: str,
        mode: str) -> None:
    leader, follower = pair(replicas)
    leader.client.mode = mode
    wait_for(lambda: leader.stopped, timeout=5, message="on_stopped")
    assert not leader.leads
    last_renewal = parse(leader.client.written[-1]["renewTime"])
    stopped = seconds(leader.stopped[0], last_renewal)
    # it kept trying until the deadline, then stopped before anyone could take over
    assert RENEW - 0.05 <= stopped < LEASE
    wait_for(lambda: follower.started, timeout=5, message="take-over")
    assert seconds(follower.started[0], last_renewal) >= LEASE
    leader.client.heal()
    seen = leader.client.gets
    wait_for(lambda: leader.client.gets >= seen + 3, timeout=5, message="healed attempts")
    assert not leader.leads and len(leader.started) == len(leader.stopped) == 1
    assert leader.error is None  # transient failures are failed attempts, not a crash


def test_an_error_no_retry_fixes_ends_run_after_on_stopped(
        replicas: Callable[[str], Replica]) -> None:
    leader = replicas("a").start()
    wait_for(lambda: leader.leads, timeout=10, message="a leader")
    leader.client.mode = "forbidden"
    wait_for(lambda: leader.error is not None, timeout=5, message="run to fail")
    assert isinstance(leader.error, errors.Forbidden)
    assert not leader.leads and len(leader.stopped) == 1


def test_a_missing_namespace_ends_run_saying_so(client: Client) -> None:
    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    replica = Replica(client, missing, "amber", "a").start()
    wait_for(lambda: replica.error is not None, timeout=5, message="run to fail")
    replica.stop()
    assert isinstance(replica.error, errors.NotFound)
    assert missing in str(replica.error) and "\n" not in str(replica.error)
    assert not replica.started and not replica.stopped


def test_a_deleted_lease_is_created_again_and_one_replica_leads(
        replicas: Callable[[str], Replica], client: Client, namespace: str,
        lease_name: str) -> None:
    leader, follower = pair(replicas)
    uid = client.get(LEASES, lease_name, namespace)["metadata"]["uid"]
    client.delete(LEASES, lease_name, namespace)

    def recreated() -> bool:
        try:
            return bool(client.get(LEASES, lease_name, namespace)["metadata"]["uid"] != uid)
        except errors.NotFound:
            return False

    wait_for(recreated, timeout=5, message="the lease created again")
    now = wait_for(lambda: one_leader(leader, follower), timeout=5, message="one leader")
    assert read(client, namespace, lease_name)["holderIdentity"] == now.identity
    assert leader.error is None and follower.error is None


@pytest.mark.parametrize("renew_time", ["2099-01-01T00:00:00.000000Z",
                                        "1999-01-01T00:00:00.000000Z"])
def test_expiry_is_judged_by_when_the_record_changed_not_by_its_renew_time(
        replicas: Callable[[str], Replica], client: Client, namespace: str, lease_name: str,
        renew_time: str) -> None:
    client.create(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"name": lease_name},
                           "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": 2,
                                    "acquireTime": renew_time, "renewTime": renew_time,
                                    "leaseTransitions": 0}}, namespace)
    written = datetime.now(UTC)
    replica = replicas("a").start()
    wait_for(lambda: replica.leads, timeout=10, message="take-over from the ghost")
    acquired = parse(read(client, namespace, lease_name)["acquireTime"])
    assert LEASE <= seconds(acquired, written) < LEASE + 1.0


def leading(replica: Replica) -> Callable[[], bool]:
    return lambda: replica.leads


def balanced(replica: Replica) -> Callable[[], bool]:
    return lambda: len(replica.started) == len(replica.stopped)


def test_never_two_leaders_over_several_terms(replicas: Callable[[str], Replica]) -> None:
    a, b = replicas("a").start(), replicas("b").start()
    done = threading.Event()
    overlaps: list[int] = []
    samples = [0]

    def sample() -> None:
        while not done.is_set():
            # a leads before and after b is read: a real overlap, not a hand-over between reads
            if a.leads and b.leads and a.leads:
                overlaps.append(samples[0])
            samples[0] += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for term in range(4):
            leader = wait_for(lambda: one_leader(a, b), timeout=10, message=f"leader {term}")
            other = b if leader is a else a
            if term % 2 == 0:  # a clean stop; it comes back once the other leads
                leader.stop()
                wait_for(leading(other), timeout=10, message=f"hand-over {term}")
                leader.start()
            else:  # cut off: it stops at its deadline, the other takes over after the lease
                leader.client.mode = "error"
                wait_for(leading(other), timeout=10, message=f"take-over {term}")
                leader.client.heal()
    finally:
        done.set()
        sampler.join()
    assert not overlaps and samples[0] > 1000
    a.stop()
    b.stop()
    # exactly one on_stopped per term (on_started runs in a thread of its own: let it run)
    for r in (a, b):
        wait_for(balanced(r), timeout=2, message=f"{r.identity}: one on_stopped per term")
    assert len(a.started) + len(b.started) >= 5
    assert a.error is None and b.error is None


def test_lease_timing_that_cannot_be_safe_is_refused() -> None:
    with pytest.raises(UsageError, match=r"lease ns/l: renew deadline 2 s must exceed 1.2 x"):
        LeaseConfig("ns", "l", "me", lease_seconds=15, renew_deadline=2, retry_period=2)
    with pytest.raises(UsageError, match=r"lease ns/l: lease duration 10 s .* renew deadline"):
        LeaseConfig("ns", "l", "me", lease_seconds=10, renew_deadline=10)
    with pytest.raises(UsageError, match=r"lease duration 2 s .* deadline \(3 s\)"):
        LeaseConfig("ns", "l", "me", lease_seconds=2, renew_deadline=3, retry_period=1)
    with pytest.raises(UsageError, match=r"retry period 0 s must be above 0"):
        LeaseConfig("ns", "l", "me", retry_period=0)
    with pytest.raises(UsageError, match=r"identity must not be empty"):
        LeaseConfig("ns", "l", "")
    assert LeaseConfig("ns", "l", "me", lease_seconds=2.5, renew_deadline=2,
                       retry_period=1).recorded_seconds == 3


def test_micro_time_is_utc_with_microseconds() -> None:
    moment = datetime(2026, 12, 8, 5, 4, 5, 123456, tzinfo=UTC)
    assert micro_time(moment) == "2026-12-08T05:04:05.123456Z"
    east = moment.astimezone(timezone(timedelta(hours=2)))
    assert micro_time(east) == "2026-12-08T05:04:05.123456Z"
    assert micro_time(datetime(2026, 12, 8, 3, 4, 5)) == "2026-12-08T03:04:05.000000Z"
