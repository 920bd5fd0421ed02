"""What the cluster puts in every namespace, recognised by what the cluster does.

Every namespace gets objects nobody asked for: Kubernetes adds the ``kube-root-ca.crt``
ConfigMap and the ``default`` ServiceAccount; OpenShift adds an ``openshift-service-ca.crt``
ConfigMap and, depending on the version, ``builder``/``deployer`` ServiceAccounts with their
pull and token Secrets and ``system:*`` RoleBindings; policy engines and meshes add their own.
Alone they must not make a namespace an application, or every namespace is one. A fixed list
is always one distribution behind, so the rule reads the cluster instead:

- an object is a *default* when objects of its group, kind and name are in all but a tenth of
  the namespaces (a namespace created a moment ago may not have them yet), counted over at
  least ``MIN_NAMESPACES``; the built-in pair is always one;
- an object *attached* to a default is one too: owned by one, or a Secret of a service-account
  token or pull type annotated with a default service account's name.

Counting is done here, on summaries, with no cluster calls (``model.build`` stays pure). An
inventory of only some namespaces cannot count: ``collect.recognise_defaults`` asks the cluster
about its few candidates and stores the answer on the ``Inventory``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from amber.apps.refs import Ref
from amber.apps.summary import Summary

#: (group, kind, name) of a namespaced object, whatever its namespace.
Key = tuple[str, str, str]

#: What Kubernetes itself puts in every namespace: defaults however few namespaces there are.
BUILT_IN: frozenset[Key] = frozenset({("", "ConfigMap", "kube-root-ca.crt"),
                                      ("", "ServiceAccount", "default")})
#: Below this many namespaces, "in every namespace" says nothing.
MIN_NAMESPACES = 3
#: Annotations by which a Secret names the service account it was made for (Kubernetes token
#: and OpenShift pull secrets; OpenShift 4.16's bound pull secrets).
ACCOUNT_ANNOTATIONS = ("kubernetes.io/service-account.name",
                       "openshift.io/internal-registry-auth-token.service-account")
ACCOUNT_SECRET_TYPES = frozenset({"kubernetes.io/service-account-token",
                                  "kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"})
#: The API server's own Service.
API_SERVICE = Ref("", "Service", "default", "kubernetes")


def key(s: Summary) -> Key:
    return (s.ref.group, s.ref.kind, s.ref.name)


def quorum(namespaces: int) -> int | None:
    """How many namespaces must hold an object for it to be a default: all but a tenth; None
    when there are too few namespaces to tell."""
    if namespaces < MIN_NAMESPACES:
        return None
    return namespaces - namespaces // 10


def namespace_count(summaries: Iterable[Summary]) -> int:
    """Namespaces in the inventory, from its Namespace objects (a list of only some namespaces'
    contents still lists every Namespace, so counting the namespaces objects are in would take
    a user's ``-n a -n b -n c`` for the whole cluster)."""
    return sum(1 for s in summaries if s.ref.kind == "Namespace" and not s.ref.group)


def infer(summaries: Iterable[Summary]) -> frozenset[Key]:
    """The defaults of an inventory that covers every namespace."""
    summaries = list(summaries)
    need = quorum(namespace_count(summaries))
    if need is None:
        return BUILT_IN
    # One object per (key, namespace) at most, so counting objects counts namespaces.
    held = Counter(key(s) for s in summaries if s.ref.namespace)
    return BUILT_IN | {k for k, n in held.items() if n >= need}


class Recogniser:
    """``recogniser(s)``: is ``s`` a default, or attached to one?"""

    def __init__(self, keys: Iterable[Key]) -> None:
        self.keys = BUILT_IN | frozenset(keys)
        self._owners = {(kind, name) for _group, kind, name in self.keys}
        self._accounts = {name for group, kind, name in self.keys
                          if not group and kind == "ServiceAccount"}

    def __call__(self, s: Summary) -> bool:
        if key(s) in self.keys or s.ref == API_SERVICE:
            return True
        # ownerReferences are namespace-local: kind and name identify the owner.
        if any((o.kind, o.name) in self._owners for o in s.owners):
            return True
        if s.secret_type in ACCOUNT_SECRET_TYPES:
            return any(s.annotations.get(a) in self._accounts for a in ACCOUNT_ANNOTATIONS)
        return False
