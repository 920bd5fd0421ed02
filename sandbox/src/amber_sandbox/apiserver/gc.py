"""The controllers whose effects restores depend on, run inside the emulator:

* **garbage collector**: a dependent whose owners (``metadata.ownerReferences``) are all gone is
  deleted (background propagation); an owner deleted with ``propagationPolicy=Foreground`` keeps
  its ``foregroundDeletion`` finalizer until its blocking dependents (``blockOwnerDeletion:
  true``) are gone; with ``Orphan`` the dependents lose their reference and survive;
* **namespace lifecycle**: a Terminating namespace has its contents deleted, and loses its
  ``kubernetes`` finalizer (and so disappears) once nothing is left in it;
* **service account and root CA publisher**: every namespace gets the ``default`` ServiceAccount
  and the ``kube-root-ca.crt`` ConfigMap, recreated if deleted;
* **CRD cleanup**: a deleted CRD's custom resources are deleted before the CRD goes.

Like the real controllers these run asynchronously, from the store's event stream, on one thread;
the work for a namespace or an owner is done once per batch of events, so deleting a namespace of
thousands of objects stays linear. Tests (against any cluster) must poll for these effects.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from amber_sandbox.apiserver import crds, errors, resources, rest, store

log = logging.getLogger(__name__)

ROOT_CA = "kube-root-ca.crt"
_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters.")


class Controllers:
    def __init__(self, *, api: rest.Rest, ca_pem: str) -> None:
        self.api = api
        self.store = api.store
        self.registry = api.registry
        self.ca_pem = ca_pem
        self._pending: deque[store.Event] = deque()
        self._cv = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sandbox-controllers",
                                        daemon=True)
        self.store.add_listener(self._enqueue)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every event so far has been handled (used by the Python API and tests
        of the sandbox itself; clients of a real cluster poll instead)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _enqueue(self, event: store.Event) -> None:
        with self._cv:
            self._pending.append(event)
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    return
                batch = list(self._pending)
                self._pending.clear()
                self._busy = True
            try:
                with self.store.lock:
                    self._handle_batch(batch)
            except Exception:
                log.exception("sandbox controllers failed on a batch of %d events", len(batch))
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    # ---------------------------------------------------------------------------------------

    def _handle_batch(self, batch: list[store.Event]) -> None:
        namespaces: set[str] = set()
        owners: set[str] = set()
        dependents: set[store.Key] = set()
        crd_names: set[str] = set()
        new_namespaces: set[str] = set()
        for ev in batch:
            meta = ev.new.meta
            if ev.resource == rest.NAMESPACES:
                if ev.type == "ADDED":
                    new_namespaces.add(ev.name)
                if meta.get("deletionTimestamp") and ev.type != "DELETED":
                    namespaces.add(ev.name)
            elif ev.namespace:
                namespaces.add(ev.namespace)
                if ev.type == "DELETED" and (
                        (ev.resource == "/serviceaccounts" and ev.name == "default")
                        or (ev.resource == "/configmaps" and ev.name == ROOT_CA)):
                    new_namespaces.add(ev.namespace)
            if ev.type == "DELETED":
                owners.update(str(r.get("uid")) for r in meta.get("ownerReferences") or [])
                dependents.update(k for k, _ in self.store.dependents(ev.new.uid))
            else:
                if meta.get("ownerReferences"):
                    dependents.add((ev.resource, ev.namespace, ev.name))
                finalizers = meta.get("finalizers") or []
                if meta.get("deletionTimestamp") and (
                        "foregroundDeletion" in finalizers or "orphan" in finalizers):
                    owners.add(ev.new.uid)
                if ev.resource == rest.CRDS and meta.get("deletionTimestamp"):
                    crd_names.add(ev.name)
            rt = self.registry.any_version(ev.resource)
            if rt is not None and rt.custom and ev.type == "DELETED":
                crd_names.add(f"{rt.plural}.{rt.group}")
        for name in sorted(new_namespaces):
            self._guard(self._namespace_defaults, name)
        for key in sorted(dependents):
            self._guard(self._dependent, key)
        for uid in sorted(owners):
            self._guard(self._owner, uid)
        for name in sorted(crd_names):
            self._guard(self._crd_cleanup, name)
        for name in sorted(namespaces):
            ns = self.store.get(rest.NAMESPACES, "", name)
            if ns is not None and ns.meta.get("deletionTimestamp"):
                self._guard(self._namespace_cleanup, name)

    def _guard(self, fn: Callable[[Any], None], arg: object) -> None:
        try:
            fn(arg)
        except errors.ApiError as e:
            log.debug("sandbox controller: %s(%r): %s", getattr(fn, "__name__", fn), arg, e)

    def _type(self, key: str) -> resources.ResourceType | None:
        return self.registry.any_version(key)

    # ---------------------------------------------------------------------------------------
    # garbage collection

    def _owner_state(self, ref: dict[str, Any], namespace: str) -> str:
        """``solid``, ``waiting`` (being deleted in the foreground) or ``absent``."""
        found = self.store.by_uid(str(ref.get("uid")))
        if found is None:
            return "absent" if self.registry.by_kind(str(ref.get("apiVersion", "")),
                                                     str(ref.get("kind", ""))) else "solid"
        (resource, owner_ns, _), owner = found
        rt = self._type(resource)
        if rt is None or rt.kind != ref.get("kind") or owner_ns not in ("", namespace):
            return "absent"
        meta = owner.meta
        if meta.get("deletionTimestamp") and "foregroundDeletion" in (meta.get("finalizers")
                                                                      or []):
            return "waiting"
        return "solid"

    def _dependent(self, key: store.Key) -> None:
        resource, namespace, name = key
        stored = self.store.get(resource, namespace, name)
        rt = self._type(resource)
        if stored is None or rt is None or stored.meta.get("deletionTimestamp"):
            return
        refs = stored.meta.get("ownerReferences") or []
        states = [self._owner_state(r, namespace) for r in refs]
        if "solid" in states:
            if "absent" in states or any(
                    s == "waiting" and r.get("blockOwnerDeletion")
                    for s, r in zip(states, refs, strict=True)):
                obj = stored.copy()
                kept = []
                for s, ref in zip(states, refs, strict=True):
                    if s == "absent":
                        continue
                    kept.append({**ref, "blockOwnerDeletion": False} if s == "waiting" else ref)
                obj["metadata"]["ownerReferences"] = kept
                self.api.update(rt, namespace, name, obj)
            return
        if not refs:
            return
        has_dependents = bool(self.store.dependents(stored.uid))
        policy = "Foreground" if "waiting" in states and has_dependents else None
        self.api.delete(rt, namespace, name, rest.DeleteOptions(propagation=policy,
                                                                uid=stored.uid))

    def _owner(self, uid: str) -> None:
        found = self.store.by_uid(uid)
        if found is None:
            return
        (resource, namespace, name), owner = found
        rt = self._type(resource)
        meta = owner.meta
        if rt is None or not meta.get("deletionTimestamp"):
            return
        finalizers = list(meta.get("finalizers") or [])
        if "orphan" in finalizers:
            for (dkey, dep) in self.store.dependents(uid):
                drt = self._type(dkey[0])
                if drt is None:
                    continue
                obj = dep.copy()
                obj["metadata"]["ownerReferences"] = [
                    r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                if not obj["metadata"]["ownerReferences"]:
                    del obj["metadata"]["ownerReferences"]
                self.api.update(drt, dkey[1], dkey[2], obj)
            self._drop_finalizer(rt, namespace, name, "orphan")
        elif "foregroundDeletion" in finalizers:
            for dkey, _ in self.store.dependents(uid):
                self._dependent(dkey)
            blocking = [
                dep for _, dep in self.store.dependents(uid)
                if any(r.get("uid") == uid and r.get("blockOwnerDeletion")
                       for r in dep.meta.get("ownerReferences") or [])]
            if not blocking:
                self._drop_finalizer(rt, namespace, name, "foregroundDeletion")

    def _drop_finalizer(self, rt: resources.ResourceType, namespace: str, name: str,
                        finalizer: str) -> None:
        current = self.store.get(rt.key, namespace, name)
        if current is None:
            return
        obj = current.copy()
        obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or []
                                         if f != finalizer]
        self.api.update(rt, namespace, name, obj)

    # ---------------------------------------------------------------------------------------
    # namespaces

    def _namespace_defaults(self, name: str) -> None:
        ns = self.store.get(rest.NAMESPACES, "", name)
        if ns is None or ns.meta.get("deletionTimestamp"):
            return
        sa_type = self.registry.lookup("", "v1", "serviceaccounts")
        cm_type = self.registry.lookup("", "v1", "configmaps")
        assert sa_type is not None and cm_type is not None
        if self.store.get(sa_type.key, name, "default") is None:
            self.api.create(sa_type, name, {"metadata": {"name": "default"}})
        if self.store.get(cm_type.key, name, ROOT_CA) is None:
            self.api.create(cm_type, name, {
                "metadata": {"name": ROOT_CA,
                             "annotations": {"kubernetes.io/description": _CA_DESCRIPTION}},
                "data": {"ca.crt": self.ca_pem}})

    def _namespace_cleanup(self, name: str) -> None:
        remaining = 0
        for resource in self.store.resources():
            rt = self._type(resource)
            if rt is None or not rt.namespaced:
                continue
            for stored in list(self.store.scan(resource, name)):
                if stored.meta.get("deletionTimestamp"):
                    remaining += 1
                    continue
                gone = self.api.delete(rt, name, str(stored.meta["name"]),
                                       rest.DeleteOptions(uid=stored.uid)).gone
                remaining += 0 if gone else 1
        if remaining:
            return
        ns = self.store.get(rest.NAMESPACES, "", name)
        if ns is None or "kubernetes" not in ((ns.obj.get("spec") or {}).get("finalizers") or []):
            return
        ns_type = self._type(rest.NAMESPACES)
        assert ns_type is not None
        obj = ns.copy()
        obj["spec"]["finalizers"] = [f for f in obj["spec"]["finalizers"] if f != "kubernetes"]
        self.api.update(ns_type, "", name, obj, subresource="finalize")

    # ---------------------------------------------------------------------------------------
    # CRDs

    def _crd_cleanup(self, name: str) -> None:
        crd = self.store.get(rest.CRDS, "", name)
        if crd is None or not crd.meta.get("deletionTimestamp") \
                or crds.CLEANUP_FINALIZER not in (crd.meta.get("finalizers") or []):
            return
        spec = crd.obj.get("spec") or {}
        key = f"{spec.get('group')}/{(spec.get('names') or {}).get('plural')}"
        rt = self._type(key)
        remaining = 0
        if rt is not None:
            for ns in list(self.store.namespaces_of(key)):
                for stored in list(self.store.scan(key, ns)):
                    if stored.meta.get("deletionTimestamp"):
                        remaining += 1
                        continue
                    gone = self.api.delete(rt, ns, str(stored.meta["name"]),
                                           rest.DeleteOptions(uid=stored.uid)).gone
                    remaining += 0 if gone else 1
        if not remaining:
            crd_type = self._type(rest.CRDS)
            assert crd_type is not None
            self._drop_finalizer(crd_type, "", name, crds.CLEANUP_FINALIZER)
