"""What the real server's generic registry does for each verb, for every resource type.

create / update / patch / delete / list / get, with the rules clients rely on:

* server-owned metadata (uid, resourceVersion, creationTimestamp, generation, deletionTimestamp)
  is set here and cannot be written by clients; ``generation`` moves only when something other
  than metadata (and status, for kinds with a status subresource) changes;
* an update carrying a resourceVersion other than the stored one is a 409 Conflict, and an update
  that changes nothing is a no-op that keeps the resourceVersion (so ``kubectl apply`` twice
  writes once);
* the status subresource and the main resource each change only their own part;
* delete honours finalizers (the object gets a deletionTimestamp and stays until they are gone),
  propagation policies (by adding the ``orphan`` / ``foregroundDeletion`` finalizers that the
  garbage collector in ``gc.py`` acts on), pod grace periods, and namespace termination.

Every method runs under the store lock, so read-modify-write sequences are atomic. The caller
(``handlers.py``) has already authenticated and authorized the request.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amber_sandbox.apiserver import (
    crds,
    defaults,
    errors,
    patching,
    resources,
    selectors,
    services,
    store,
    validation,
)
from amber_sandbox.wire import Obj

NAMESPACES = "/namespaces"
CRDS = "apiextensions.k8s.io/customresourcedefinitions"

_SERVER_META = ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                "deletionGracePeriodSeconds", "selfLink", "managedFields", "generation")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")


#: The last (second, text) that ``timestamp`` formatted: writes come many to a second. One
#: slot holding a tuple, replaced whole, so threads need no lock to read it.
_last_timestamp: list[tuple[int, str]] = [(-1, "")]


def timestamp(t: float) -> str:
    second = int(t) if t >= 0 else -1
    cached = _last_timestamp[0]
    if cached[0] == second and second >= 0:
        return cached[1]
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    if second >= 0:
        _last_timestamp[0] = (second, text)
    return text


class _Uids:
    """Random (version 4) UUIDs as ``str(uuid.uuid4())`` gives them, from ``os.urandom`` read
    4 KiB at a time instead of 16 bytes a call (a system call and a ``UUID`` object per create
    otherwise)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        with self._lock:
            if self._at + 16 > len(self._pool):
                self._pool, self._at = os.urandom(4096), 0
            raw = bytearray(self._pool[self._at:self._at + 16])
            self._at += 16
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


new_uid = _Uids()


@dataclass(frozen=True)
class DeleteOptions:
    propagation: str | None = None  # Foreground, Background, Orphan
    grace_period: int | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class ListResult:
    items: list[store.Stored]
    resource_version: int
    continue_token: str
    remaining: int | None


@dataclass(frozen=True)
class Deleted:
    stored: store.Stored
    #: False when the object stays (finalizers, a pod's grace period, a terminating namespace)
    gone: bool


class Rest:
    def __init__(self, *, objects: store.Store, registry: resources.Registry,
                 allocator: services.Allocator, clock: Callable[[], float] = time.time) -> None:
        self.store = objects
        self.registry = registry
        self.allocator = allocator
        self.clock = clock

    def now(self) -> str:
        return timestamp(self.clock())

    # ---------------------------------------------------------------------------------------
    # reading

    def get(self, rt: resources.ResourceType, namespace: str, name: str) -> store.Stored:
        found = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if found is None:
            raise errors.not_found(resource=rt.plural, group=rt.group, name=name)
        return found

    def list_objects(self, rt: resources.ResourceType, namespace: str | None, *,
             labels: selectors.LabelSelector = selectors.EVERYTHING,
             fields: selectors.FieldSelector | None = None, limit: int = 0,
             continue_token: str = "") -> ListResult:
        fields = fields or selectors.FieldSelector()
        scope = namespace if rt.namespaced else ""
        with self.store.lock:
            rv = self.store.resource_version
            after: tuple[str, str] | None = None
            if continue_token:
                rv, after = _decode_continue(continue_token, namespaced=rt.namespaced)
            name = fields.single_value("metadata.name")
            if name is not None and scope is not None and after is None:
                found = self.store.get(rt.key, scope, name)
                candidates = iter([found] if found else [])
            else:
                candidates = self.store.scan(rt.key, scope, after=after)
            items: list[store.Stored] = []
            token = ""
            filtered = not labels.empty or not fields.empty
            for stored in candidates:
                if filtered and not (labels.matches(stored.meta.get("labels"))
                                     and fields.matches(stored.obj)):
                    continue
                items.append(stored)
                if limit and len(items) >= limit:
                    break
            remaining: int | None = None
            if limit and len(items) >= limit:
                last = items[-1].meta
                last_key = (str(last.get("namespace") or ""), str(last["name"]))
                rest = sum(1 for _ in self.store.scan(rt.key, scope, after=last_key))
                if rest:
                    token = _encode_continue(rv, last_key, namespaced=rt.namespaced)
                    remaining = None if filtered else rest
            return ListResult(items, rv, token, remaining)

    # ---------------------------------------------------------------------------------------
    # create

    def create(self, rt: resources.ResourceType, namespace: str, body: Any, *,
               dry_run: bool = False) -> store.Stored:
        if "create" not in rt.verbs:
            raise errors.method_not_allowed(verb="create", resource=rt.plural, group=rt.group)
        obj = self._check_body(rt, body)
        meta = obj["metadata"]
        _place(rt, meta, namespace)
        with self.store.lock:
            if rt.namespaced:
                self._check_namespace_open(rt, namespace, str(meta.get("name") or ""))
            if rt.custom:
                self._check_crd_open(rt)
            if not meta.get("name") and meta.get("generateName"):
                prefix = str(meta["generateName"])
                problems = validation.name_problems(prefix, rt.name_rule, prefix=True)
                if problems:
                    raise errors.invalid(kind=rt.kind, group=rt.group, name="", causes=[
                        validation.invalid("metadata.generateName", prefix, p)
                        for p in problems])
                meta["name"] = self._generate_name(rt, namespace, prefix)
            for f in _SERVER_META:
                meta.pop(f, None)
            meta["uid"] = new_uid()
            meta["creationTimestamp"] = self.now()
            if rt.generation:
                meta["generation"] = 1
            if rt.has("status"):
                status = defaults.initial_status(rt.kind, obj) if not rt.custom else None
                if status is None:
                    obj.pop("status", None)
                else:
                    obj["status"] = status
            if rt.custom:
                obj["apiVersion"] = f"{rt.group}/{rt.storage_version or rt.version}"
            self._prepare(rt, obj, None)
            causes = validation.validate_object(rt, obj)
            if rt.key == CRDS:
                causes += crds.validate(obj)
            name = str(meta.get("name") or "")
            if causes:
                raise errors.invalid(kind=rt.kind, group=rt.group, name=name, causes=causes)
            if self.store.get(rt.key, namespace if rt.namespaced else "", name) is not None:
                raise errors.already_exists(resource=rt.plural, group=rt.group, name=name)
            if rt.kind == "Service" and not rt.custom:
                causes = self.allocator.plan(obj, None)
                if causes:
                    raise errors.invalid(kind=rt.kind, group=rt.group, name=name, causes=causes)
            if rt.key == CRDS:
                obj["status"] = crds.established_status(obj, now=self.now(), previous=None)
                meta["finalizers"] = [*(meta.get("finalizers") or []), crds.CLEANUP_FINALIZER]
            if dry_run:
                return store.Stored(obj, store.encode(obj))
            if rt.kind == "Service" and not rt.custom:
                self.allocator.commit(obj, None)
            stored = self.store.put(rt.key, obj)
            self._after_write(rt, None, stored)
            return stored

    def _generate_name(self, rt: resources.ResourceType, namespace: str, prefix: str) -> str:
        base = prefix[: 63 - 5] if rt.name_rule in ("label", "dns1035") else prefix[: 253 - 5]
        for _ in range(100):
            name = base + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
            if self.store.get(rt.key, namespace if rt.namespaced else "", name) is None:
                return name
        raise errors.already_exists(resource=rt.plural, group=rt.group, name=base)

    def _check_body(self, rt: resources.ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request was not a JSON object")
        api_version = body.get("apiVersion")
        kind = body.get("kind")
        if api_version and api_version != rt.api_version:
            raise errors.bad_request(f"the API version in the data ({api_version}) does not "
                                     f"match the expected API version ({rt.api_version})")
        if kind and kind != rt.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the "
                                     f"expected kind ({rt.kind})")
        body["apiVersion"] = rt.api_version
        body["kind"] = rt.kind
        meta = body.get("metadata")
        if meta is None:
            body["metadata"] = {}
        elif not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        return body

    def _check_namespace_open(self, rt: resources.ResourceType, namespace: str,
                              name: str) -> None:
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is None:
            raise errors.not_found(resource="namespaces", group="", name=namespace)
        if ns.meta.get("deletionTimestamp"):
            raise errors.forbidden(
                resource=rt.plural, group=rt.group, name=name,
                why=f"unable to create new content in namespace {namespace} because it is "
                    "being terminated")

    def _check_crd_open(self, rt: resources.ResourceType) -> None:
        crd = self.store.get(CRDS, "", f"{rt.plural}.{rt.group}")
        if crd is not None and crd.meta.get("deletionTimestamp"):
            raise errors.ApiError(405, "MethodNotAllowed",
                                  "create not allowed while custom resource definition is "
                                  "terminating")

    # ---------------------------------------------------------------------------------------
    # update and patch

    def update(self, rt: resources.ResourceType, namespace: str, name: str, body: Any, *,
               subresource: str = "", dry_run: bool = False) -> tuple[store.Stored, bool]:
        """PUT. Returns the stored object and whether it was created."""
        if "update" not in rt.verbs:
            raise errors.method_not_allowed(verb="update", resource=rt.plural, group=rt.group)
        obj = self._check_body(rt, body)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the "
                                     f"name on the URL ({name})")
        meta["name"] = name
        scope = namespace if rt.namespaced else ""
        _place(rt, meta, namespace)
        with self.store.lock:
            old = self.store.get(rt.key, scope, name)
            if old is None:
                if rt.create_on_update and not subresource:
                    return self.create(rt, namespace, obj, dry_run=dry_run), True
                raise errors.not_found(resource=rt.plural, group=rt.group, name=name)
            self._check_preconditions(rt, old, uid=meta.get("uid"),
                                      resource_version=meta.get("resourceVersion"))
            new = self._merge_update(rt, old, obj, subresource)
            return self._commit_update(rt, old, new, subresource=subresource,
                                       dry_run=dry_run), False

    def _check_preconditions(self, rt: resources.ResourceType, old: store.Stored, *,
                             uid: Any, resource_version: Any) -> None:
        name = str(old.meta["name"])
        if uid and uid != old.uid:
            raise errors.conflict(resource=rt.plural, group=rt.group, name=name,
                                  why=f"Precondition failed: UID in precondition: {uid}, UID in "
                                      f"object meta: {old.uid}")
        if resource_version and str(resource_version) != old.meta["resourceVersion"]:
            raise errors.conflict(resource=rt.plural, group=rt.group, name=name,
                                  why=errors.STALE_OBJECT)

    def _merge_update(self, rt: resources.ResourceType, old: store.Stored, obj: Obj,
                      subresource: str) -> Obj:
        """The object an update would store: the client's part of ``obj`` over ``old``."""
        if subresource == "status":
            new = old.copy()
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            return new
        if subresource == "finalize":
            new = old.copy()
            new.setdefault("spec", {})["finalizers"] = list(
                (obj.get("spec") or {}).get("finalizers") or [])
            return new
        new = obj
        meta = new["metadata"]
        for f in _SERVER_META:
            meta.pop(f, None)
            if f in old.meta and f != "managedFields":
                meta[f] = old.meta[f]
        if rt.has("status"):
            if "status" in old.obj:
                new["status"] = json.loads(json.dumps(old.obj["status"]))
            else:
                new.pop("status", None)
        if rt.custom:
            new["apiVersion"] = f"{rt.group}/{rt.storage_version or rt.version}"
        self._prepare(rt, new, old.obj)
        return new

    def _commit_update(self, rt: resources.ResourceType, old: store.Stored, new: Obj, *,
                       subresource: str = "", dry_run: bool = False) -> store.Stored:
        name = str(old.meta["name"])
        causes = validation.validate_update(rt, old.obj, new)
        if old.meta.get("deletionTimestamp"):
            added = set(new["metadata"].get("finalizers") or []) - set(
                old.meta.get("finalizers") or [])
            if added:
                causes.append(validation.forbidden(
                    "metadata.finalizers", "no new finalizers can be added if the object is "
                                           "being deleted, found new finalizers "
                                           f"{sorted(added)}"))
        if rt.key == CRDS and not subresource:
            causes += crds.validate_update(old.obj, new)
        if rt.kind == "Service" and not rt.custom and not subresource:
            causes += [] if causes else self.allocator.plan(new, old.obj)
        if causes:
            raise errors.invalid(kind=rt.kind, group=rt.group, name=name, causes=causes)
        if rt.key == CRDS and not subresource:
            new["status"] = crds.established_status(new, now=self.now(),
                                                    previous=old.obj.get("status"))
        meta = new["metadata"]
        meta["resourceVersion"] = old.meta["resourceVersion"]
        if rt.generation and _spec_part(rt, old.obj) != _spec_part(rt, new):
            meta["generation"] = int(old.meta.get("generation") or 0) + 1
        if new == old.obj:
            return old
        if dry_run:
            return store.Stored(new, store.encode(new))
        if rt.kind == "Service" and not rt.custom:
            self.allocator.commit(new, old.obj)
        if self._finished_deleting(rt, new):
            final = self.store.put(rt.key, new)
            self._after_write(rt, old, final)
            return self._remove(rt, final)
        stored = self.store.put(rt.key, new)
        self._after_write(rt, old, stored)
        return stored

    def patch(self, rt: resources.ResourceType, namespace: str, name: str, patch_type: str,
              body: bytes, *, subresource: str = "", dry_run: bool = False) -> store.Stored:
        if "patch" not in rt.verbs:
            raise errors.method_not_allowed(verb="patch", resource=rt.plural, group=rt.group)
        patch_doc = _parse_json(body)
        with self.store.lock:
            old = self.store.get(rt.key, namespace if rt.namespaced else "", name)
            if old is None:
                if patch_type == "application/apply-patch+yaml" and not subresource:
                    return self.create(rt, namespace, _strip_directives(patch_doc),
                                       dry_run=dry_run)
                raise errors.not_found(resource=rt.plural, group=rt.group, name=name)
            if subresource == "scale":
                current = self.scale_of(rt, old)
                patched = self._apply_patch(rt, current, patch_type, patch_doc, scale=True)
                return self.update_scale(rt, namespace, name, patched, dry_run=dry_run)
            patched = self._apply_patch(rt, old.copy(), patch_type, patch_doc)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch did not produce an object")
            self._check_body(rt, patched)
            pmeta = patched["metadata"]
            if pmeta.get("name") != name:
                raise errors.bad_request("metadata.name: Invalid value: the name of the object "
                                         "may not be changed by a patch")
            self._check_preconditions(rt, old, uid=pmeta.get("uid"),
                                      resource_version=pmeta.get("resourceVersion"))
            new = self._merge_update(rt, old, patched, subresource)
            return self._commit_update(rt, old, new, subresource=subresource, dry_run=dry_run)

    def _apply_patch(self, rt: resources.ResourceType, current: Obj, patch_type: str,
                     patch_doc: Any, *, scale: bool = False) -> Any:
        if patch_type == "application/json-patch+json":
            return patching.json_patch(current, patch_doc)
        if patch_type == "application/merge-patch+json":
            return patching.merge_patch(current, patch_doc)
        if patch_type == "application/strategic-merge-patch+json":
            if rt.custom and not scale:
                raise errors.unsupported_media_type(
                    patch_type, [PATCH_TYPES[0], PATCH_TYPES[1], PATCH_TYPES[3]])
            return patching.strategic_merge_patch("Scale" if scale else rt.kind, current,
                                                  patch_doc)
        if patch_type == "application/apply-patch+yaml":
            # Server-side apply without field ownership: the applied configuration is merged
            # into the live object (built-ins strategically, custom resources as a merge patch).
            doc = _strip_directives(patch_doc)
            if rt.custom or scale:
                return patching.merge_patch(current, doc)
            return patching.strategic_merge_patch(rt.kind, current, doc)
        raise errors.unsupported_media_type(patch_type, list(PATCH_TYPES))

    # ---------------------------------------------------------------------------------------
    # scale subresource

    def scale_of(self, rt: resources.ResourceType, stored: store.Stored) -> Obj:
        paths = rt.scale or resources.ScalePaths()
        obj = stored.obj
        meta = stored.meta
        selector: Any = _dig(obj, paths.label_selector) if paths.label_selector else None
        if isinstance(selector, dict):
            selector = selectors.selector_string(selector)
        status: Obj = {"replicas": int(_dig(obj, paths.status_replicas) or 0)}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": int(_dig(obj, paths.spec_replicas) or 0)},
            "status": status,
        }

    def update_scale(self, rt: resources.ResourceType, namespace: str, name: str, scale: Any,
                     *, dry_run: bool = False) -> store.Stored:
        if not isinstance(scale, dict):
            raise errors.bad_request("the body of the request was not a JSON object")
        with self.store.lock:
            old = self.get(rt, namespace, name)
            meta = scale.get("metadata") or {}
            self._check_preconditions(rt, old, uid=meta.get("uid"),
                                      resource_version=meta.get("resourceVersion"))
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid(kind="Scale", group="autoscaling", name=name, causes=[
                    validation.invalid("spec.replicas", replicas,
                                       "must be greater than or equal to 0")])
            new = old.copy()
            _put(new, (rt.scale or resources.ScalePaths()).spec_replicas, replicas)
            stored = self._commit_update(rt, old, new, dry_run=dry_run)
            out = self.scale_of(rt, stored)
            return store.Stored(out, store.encode(out))

    # ---------------------------------------------------------------------------------------
    # pods/binding: the only way to set a pod's nodeName once it exists (what schedulers do)

    def bind(self, rt: resources.ResourceType, namespace: str, name: str, binding: Any) -> None:
        target = (binding or {}).get("target") if isinstance(binding, dict) else None
        node = (target or {}).get("name") if isinstance(target, dict) else None
        if not node:
            raise errors.invalid(kind="Binding", group="", name=name,
                                 causes=[validation.required("target.name")])
        with self.store.lock:
            old = self.get(rt, namespace, name)
            if old.meta.get("deletionTimestamp"):
                raise errors.conflict(resource="pods/binding", group="", name=name,
                                      why=f"pod {name} is being deleted, cannot be assigned to "
                                          "a host")
            current = (old.obj.get("spec") or {}).get("nodeName")
            if current:
                raise errors.conflict(resource="pods/binding", group="", name=name,
                                      why=f'pod {name} is already assigned to node "{current}"')
            new = old.copy()
            new.setdefault("spec", {})["nodeName"] = str(node)
            status = new.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or []
                          if c.get("type") != "PodScheduled"]
            status["conditions"] = [*conditions, {"type": "PodScheduled", "status": "True",
                                                  "lastProbeTime": None,
                                                  "lastTransitionTime": self.now()}]
            self.store.put(rt.key, new)

    # ---------------------------------------------------------------------------------------
    # delete

    def delete(self, rt: resources.ResourceType, namespace: str, name: str,
               options: DeleteOptions = DeleteOptions()) -> Deleted:
        if "delete" not in rt.verbs:
            raise errors.method_not_allowed(verb="delete", resource=rt.plural, group=rt.group)
        with self.store.lock:
            old = self.get(rt, namespace, name)
            self._check_preconditions(rt, old, uid=options.uid,
                                      resource_version=options.resource_version)
            obj = old.copy()
            meta = obj["metadata"]
            finalizers: list[str] = list(meta.get("finalizers") or [])
            policy = options.propagation
            if policy == "Orphan":
                finalizers = [f for f in finalizers if f != "foregroundDeletion"]
                finalizers += [] if "orphan" in finalizers else ["orphan"]
            elif policy == "Foreground":
                finalizers = [f for f in finalizers if f != "orphan"]
                finalizers += [] if "foregroundDeletion" in finalizers else ["foregroundDeletion"]
            elif policy == "Background":
                finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
            elif policy is not None:
                raise errors.bad_request(f"propagationPolicy: Unsupported value: {policy!r}")
            if meta.get("deletionTimestamp"):
                # already being deleted: only a shorter grace period or new finalizers matter
                grace = self._grace(rt, obj, options)
                current = int(meta.get("deletionGracePeriodSeconds") or 0)
                if finalizers == list(meta.get("finalizers") or []) and grace >= current:
                    return Deleted(old, False)
                meta["finalizers"] = finalizers
                if not finalizers:
                    meta.pop("finalizers")
                if grace < current:
                    meta["deletionGracePeriodSeconds"] = grace
                    meta["deletionTimestamp"] = timestamp(self.clock() + grace)
                if options.dry_run:
                    return Deleted(store.Stored(obj, store.encode(obj)), False)
                if self._finished_deleting(rt, obj):
                    return Deleted(self._remove(rt, self.store.put(rt.key, obj)), True)
                return Deleted(self.store.put(rt.key, obj), False)
            grace = self._grace(rt, obj, options)
            namespace_pending = rt.key == NAMESPACES and bool(
                (obj.get("spec") or {}).get("finalizers"))
            if not finalizers and grace == 0 and not namespace_pending:
                if options.dry_run:
                    return Deleted(old, True)
                return Deleted(self._remove(rt, old), True)
            meta["finalizers"] = finalizers
            if not finalizers:
                meta.pop("finalizers")
            meta["deletionTimestamp"] = timestamp(self.clock() + grace)
            meta["deletionGracePeriodSeconds"] = grace
            if rt.generation and meta.get("generation"):
                meta["generation"] = int(meta["generation"]) + 1
            if rt.key == NAMESPACES:
                obj.setdefault("status", {})["phase"] = "Terminating"
            if rt.key == CRDS:
                obj["status"]["conditions"] = [
                    c for c in obj["status"].get("conditions") or []
                    if c.get("type") != "Terminating"] + [{
                        "type": "Terminating", "status": "True",
                        "reason": "InstanceDeletionPending",
                        "message": "CustomResourceDefinition marked for deletion; "
                                   "CustomResource deletion will begin soon",
                        "lastTransitionTime": self.now()}]
            if options.dry_run:
                return Deleted(store.Stored(obj, store.encode(obj)), False)
            stored = self.store.put(rt.key, obj)
            self._after_write(rt, old, stored)
            return Deleted(stored, False)

    def _grace(self, rt: resources.ResourceType, obj: Obj, options: DeleteOptions) -> int:
        """Only pods bound to a node that are not finished wait out a grace period (the kubelet
        then deletes them with grace 0)."""
        if rt.key != "/pods":
            return 0
        spec = obj.get("spec") or {}
        if not spec.get("nodeName"):
            return 0
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        if options.grace_period is not None:
            return max(0, options.grace_period)
        return int(spec.get("terminationGracePeriodSeconds", 30) or 0)

    def _finished_deleting(self, rt: resources.ResourceType, obj: Obj) -> bool:
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        if rt.key == NAMESPACES and (obj.get("spec") or {}).get("finalizers"):
            return False
        return not meta.get("deletionGracePeriodSeconds")

    def _remove(self, rt: resources.ResourceType, old: store.Stored) -> store.Stored:
        meta = old.meta
        final = self.store.remove(rt.key, str(meta.get("namespace") or ""), str(meta["name"]))
        if rt.kind == "Service" and not rt.custom:
            self.allocator.commit(None, old.obj)
        if rt.key == CRDS:
            spec = old.obj.get("spec") or {}
            plural = (spec.get("names") or {}).get("plural")
            self.registry.set_custom(f"{spec.get('group')}/{plural}", ())
        return final

    def delete_collection(self, rt: resources.ResourceType, namespace: str | None, *,
                          labels: selectors.LabelSelector = selectors.EVERYTHING,
                          fields: selectors.FieldSelector | None = None,
                          options: DeleteOptions = DeleteOptions()) -> list[store.Stored]:
        if "deletecollection" not in rt.verbs:
            raise errors.method_not_allowed(verb="deletecollection", resource=rt.plural,
                                            group=rt.group)
        with self.store.lock:
            listed = self.list_objects(rt, namespace, labels=labels, fields=fields).items
            out = []
            for stored in listed:
                meta = stored.meta
                try:
                    out.append(self.delete(rt, str(meta.get("namespace") or ""),
                                           str(meta["name"]), options).stored)
                except errors.ApiError as e:
                    if e.code != 404:
                        raise
            return out

    # ---------------------------------------------------------------------------------------
    # per-kind preparation and follow-ups

    def _prepare(self, rt: resources.ResourceType, obj: Obj, old: Obj | None) -> None:
        """Kind-specific strategy before defaulting and validation (create and update)."""
        if rt.custom:
            return
        if rt.kind == "Secret":
            _merge_string_data(obj)
        elif rt.key == NAMESPACES:
            spec = obj.setdefault("spec", {})
            if old is None:
                fins = list(spec.get("finalizers") or [])
                spec["finalizers"] = fins if "kubernetes" in fins else [*fins, "kubernetes"]
            else:
                spec["finalizers"] = list((old.get("spec") or {}).get("finalizers") or [])
                if not spec["finalizers"]:
                    del spec["finalizers"]
        elif rt.key == CRDS:
            crds.apply_defaults(obj)
            if old is not None:
                obj["status"] = json.loads(json.dumps(old.get("status") or {}))
        defaults.apply(rt.kind, obj)
        if rt.kind == "Job" and old is None:
            defaults.job_selector(obj)

    def _after_write(self, rt: resources.ResourceType, old: store.Stored | None,
                     new: store.Stored) -> None:
        if rt.key == CRDS and not new.meta.get("deletionTimestamp"):
            types = crds.resource_types(new.obj)
            if types:
                self.registry.set_custom(types[0].key, types)


def _spec_part(rt: resources.ResourceType, obj: Obj) -> Obj:
    skip = ("metadata", "status") if rt.has("status") else ("metadata",)
    return {k: v for k, v in obj.items() if k not in skip}


def _merge_string_data(secret: Obj) -> None:
    data = secret.get("data") or {}
    for value in data.values():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as e:
            raise errors.bad_request(f'Secret in version "v1" cannot be handled as a Secret: '
                                     f"illegal base64 data: {e}") from None
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        data = dict(data)
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        secret["data"] = data


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.bad_request(f"error decoding patch: {e}") from None


def _strip_directives(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip_directives(v) for k, v in doc.items() if not k.startswith("$")}
    if isinstance(doc, list):
        return [_strip_directives(v) for v in doc]
    return doc


def _dig(obj: Any, path: str | None) -> Any:
    if not path:
        return None
    for part in path.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _put(obj: Obj, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _encode_continue(rv: int, after: tuple[str, str], *, namespaced: bool) -> str:
    start = f"{after[0]}/{after[1]}" if namespaced else after[1]
    doc = {"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\u0000"}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def _decode_continue(token: str, *, namespaced: bool) -> tuple[int, tuple[str, str]]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        start = str(doc["start"]).rstrip("\u0000")
        rv = int(doc["rv"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.bad_request(f"continue key is not valid: {token!r}") from None
    if namespaced:
        ns, _, name = start.partition("/")
        return rv, (ns, name)
    return rv, ("", start)


def _place(rt: resources.ResourceType, meta: dict[str, Any], namespace: str) -> None:
    """Set the object's namespace from the URL (a body naming another one is refused), or drop
    it for a cluster-scoped resource, as the real server does on create and update."""
    if rt.namespaced:
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match "
                                     "the namespace sent on the request")
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
