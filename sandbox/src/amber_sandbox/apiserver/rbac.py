"""Authentication by bearer token and RBAC authorization over the stored RBAC objects.

The authorizer reads Roles, ClusterRoles, RoleBindings and ClusterRoleBindings from the store,
with the rule matching the RBAC documentation describes: ``*`` wildcards for verbs, API groups
and resources, ``resource/subresource`` and ``*/subresource`` forms, ``resourceNames`` (which
never match a request without a name, such as list or create), non-resource URLs with a
trailing ``*``, and subjects of kind User, Group and ServiceAccount. Members of
``system:masters`` are allowed everything without consulting RBAC, as on a real cluster. Access
reviews (``handlers.py``) call the same ``authorize``.

What is bound to a user in a namespace (``grants``: a scan of every ClusterRoleBinding and the
namespace's RoleBindings) is cached per user name, groups and namespace, because every request
of a user without ``system:masters`` needs it. The cache cannot go stale: a store listener bumps a
generation on any write of the four RBAC resources (in the same locked step as the write, so a
request that starts after an RBAC write returned sees it), and an entry is only used while the
generation it was computed at is current.

Tokens issued by the TokenRequest API are bound to their ServiceAccount's uid, as a real
server's are: once that ServiceAccount is deleted (or re-created, so with a new uid) the token is
401 Unauthorized. ``Tokens`` has no store, so the check is made by the ``Authorizer`` (which every
request passes before anything else) and answers 401, not 403. A token's expiry, when given to
``Tokens.add``, is checked by ``Tokens.authenticate``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from amber_sandbox.apiserver import errors, store
from amber_sandbox.wire import Obj

_RBAC = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
_SA_PREFIX = "system:serviceaccount:"
_SERVICE_ACCOUNTS = "/serviceaccounts"  # the store key of core/v1 serviceaccounts


@dataclass(frozen=True)
class TokenBinding:
    """The ServiceAccount a bound token was issued for; the token is valid only while a
    ServiceAccount of that namespace, name and uid exists."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, compare=False, hash=False)
    #: Set on the users of ServiceAccount tokens (by ``Tokens.add``), checked by the Authorizer.
    binding: TokenBinding | None = field(default=None, compare=False, hash=False, repr=False)

    def with_authenticated(self) -> User:
        groups = self.groups if AUTHENTICATED in self.groups else (*self.groups, AUTHENTICATED)
        return dataclasses.replace(self, groups=groups)

    def as_dict(self) -> Obj:
        out: Obj = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


def service_account_user(namespace: str, name: str, uid: str = "") -> User:
    """The identity a ServiceAccount token carries."""
    return User(f"system:serviceaccount:{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
                uid)


def _binding(user: User) -> TokenBinding | None:
    """What a token for ``user`` is bound to: the ServiceAccount, when the user is one with a
    uid (the identity ``service_account_user`` gives a TokenRequest's token)."""
    if not user.uid or not user.name.startswith(_SA_PREFIX):
        return None
    namespace, sep, name = user.name[len(_SA_PREFIX):].partition(":")
    return TokenBinding(namespace, name, user.uid) if sep and namespace and name else None


class Tokens:
    """Bearer token -> user. Fixed at start (never bound, never expiring, like a static token
    file), plus tokens added later: those of ServiceAccount users with a uid are bound to that
    ServiceAccount, and any may expire (``expires_at``, a ``time.time()``)."""

    def __init__(self, table: dict[str, User], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._table = dict(table)
        #: token -> ``self._table[token].with_authenticated()``, built on first use (every
        #: request authenticates; ``dataclasses.replace`` each time was measurable)
        self._authenticated: dict[str, User] = {}
        self._expiry: dict[str, float] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, token: str, user: User, *, expires_at: float | None = None) -> None:
        binding = user.binding or _binding(user)
        if binding is not None:
            user = dataclasses.replace(user, binding=binding)
        with self._lock:
            self._table[token] = user
            self._authenticated.pop(token, None)
            if expires_at is None:
                self._expiry.pop(token, None)
            else:
                self._expiry[token] = expires_at

    def authenticate(self, authorization: str | None) -> User | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        with self._lock:
            expires_at = self._expiry.get(token)
            if expires_at is not None and self._clock() >= expires_at:
                # expired for good: forget it (a real server answers 401 from now on)
                del self._expiry[token]
                self._table.pop(token, None)
                self._authenticated.pop(token, None)
                return None
            known = self._authenticated.get(token)
            if known is not None:
                return known
            user = self._table.get(token)
            if user is None:
                return None
            known = self._authenticated[token] = user.with_authenticated()
            return known


@dataclass(frozen=True)
class Attributes:
    """One request as RBAC sees it (the fields of a SubjectAccessReview)."""

    user: User
    verb: str
    namespace: str = ""
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def _matches(values: list[str] | None, wanted: str) -> bool:
    if not values:
        return False
    return "*" in values or wanted in values


def rule_allows(rule: Obj, a: Attributes) -> bool:
    if not _matches(rule.get("verbs"), a.verb):
        return False
    if not a.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url in ("*", a.path) or (url.endswith("*") and a.path.startswith(url[:-1])):
                return True
        return False
    if not _matches(rule.get("apiGroups"), a.group):
        return False
    combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    resources_ok = False
    for r in rule.get("resources") or []:
        if r in ("*", combined) or (a.subresource and r == f"*/{a.subresource}"):
            resources_ok = True
            break
    if not resources_ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def subject_matches(subject: Obj, user: User, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{ns}:{name}"
    return False


@dataclass(frozen=True)
class Grant:
    binding: str  # e.g. 'RoleBinding "x/ns"'
    role: str
    rules: list[Obj]
    namespace: str  # "" for cluster-wide grants


#: The store keys whose writes change what ``Authorizer.grants`` returns.
_RBAC_KEYS = frozenset(f"{_RBAC}/{plural}" for plural in
                       ("roles", "clusterroles", "rolebindings", "clusterrolebindings"))
#: Entries kept at most before the grants cache starts over (users x namespaces seen).
_GRANTS_CACHE_SIZE = 10_000


class Authorizer:
    def __init__(self, objects: store.Store) -> None:
        self.store = objects
        #: bumped (under the store lock, by ``_on_event``) by every write of an RBAC object
        self.generation = 0
        #: (user name, groups, namespace or None) -> (generation, grants)
        self._grants: dict[tuple[str, tuple[str, ...], str | None],
                           tuple[int, list[Grant]]] = {}
        objects.add_listener(self._on_event)

    def _on_event(self, event: store.Event) -> None:
        if event.resource in _RBAC_KEYS:
            self.generation += 1

    def _role_rules(self, ref: Obj, namespace: str) -> tuple[str, list[Obj]]:
        kind = ref.get("kind")
        name = str(ref.get("name", ""))
        if kind == "ClusterRole":
            role = self.store.get(f"{_RBAC}/clusterroles", "", name)
        elif kind == "Role" and namespace:
            role = self.store.get(f"{_RBAC}/roles", namespace, name)
        else:
            role = None
        return f'{kind} "{name}"', list((role.obj.get("rules") if role else None) or [])

    def grants(self, user: User, namespace: str | None) -> list[Grant]:
        """Every rule set bound to ``user`` that applies in ``namespace`` (cluster-wide ones
        always; None means only cluster-wide). Cached until the next RBAC write; the list is
        shared, callers must not change it."""
        key = (user.name, user.groups, namespace or None)
        cached = self._grants.get(key)
        if cached is not None and cached[0] == self.generation:
            return cached[1]
        with self.store.lock:
            generation = self.generation
            out = self._scan_grants(user, namespace)
        if len(self._grants) >= _GRANTS_CACHE_SIZE:
            self._grants.clear()
        self._grants[key] = (generation, out)
        return out

    def _scan_grants(self, user: User, namespace: str | None) -> list[Grant]:
        out: list[Grant] = []
        with self.store.lock:
            for crb in self.store.scan(f"{_RBAC}/clusterrolebindings", ""):
                if any(subject_matches(s, user, "") for s in crb.obj.get("subjects") or []):
                    role, rules = self._role_rules(crb.obj.get("roleRef") or {}, "")
                    out.append(Grant(f'ClusterRoleBinding "{crb.meta["name"]}"', role, rules, ""))
            if namespace:
                for rb in self.store.scan(f"{_RBAC}/rolebindings", namespace):
                    if any(subject_matches(s, user, namespace)
                           for s in rb.obj.get("subjects") or []):
                        role, rules = self._role_rules(rb.obj.get("roleRef") or {}, namespace)
                        out.append(Grant(f'RoleBinding "{rb.meta["name"]}/{namespace}"', role,
                                         rules, namespace))
        return out

    def check_binding(self, user: User) -> None:
        """401 Unauthorized unless the ServiceAccount a bound token was issued for still exists
        with the same uid (a real server's token authenticator makes this check)."""
        b = user.binding
        if b is None:
            return
        sa = self.store.get(_SERVICE_ACCOUNTS, b.namespace, b.name)
        if sa is None or sa.uid != b.uid:
            raise errors.unauthorized()

    def authorize(self, a: Attributes) -> Decision:
        # Users made up by access reviews and impersonation carry no binding; an authenticated
        # caller's does, and every request is authorized first, so this is where a token whose
        # ServiceAccount is gone stops working.
        self.check_binding(a.user)
        if MASTERS in a.user.groups:
            return Decision(True, "")
        for grant in self.grants(a.user, a.namespace if a.resource_request else None):
            if any(rule_allows(r, a) for r in grant.rules):
                return Decision(True, f"RBAC: allowed by {grant.binding} of {grant.role} to "
                                      f"User \"{a.user.name}\"")
        return Decision(False, "")

    def rules_review(self, user: User, namespace: str) -> Obj:
        """The status of a SelfSubjectRulesReview."""
        resource_rules: list[Obj] = []
        non_resource_rules: list[Obj] = []
        if MASTERS in user.groups:
            resource_rules.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
            non_resource_rules.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
        for grant in self.grants(user, namespace):
            for r in grant.rules:
                if r.get("nonResourceURLs"):
                    non_resource_rules.append({"verbs": r.get("verbs", []),
                                               "nonResourceURLs": r["nonResourceURLs"]})
                else:
                    rule: Obj = {k: r[k] for k in ("verbs", "apiGroups", "resources",
                                                   "resourceNames") if k in r}
                    resource_rules.append(rule)
        return {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                "incomplete": False}
