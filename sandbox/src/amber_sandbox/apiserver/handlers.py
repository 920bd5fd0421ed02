"""From an HTTP request to a response: authentication, request info (verb, resource, namespace,
name, subresource, as the real server's RequestInfo resolver reads paths), authorization, and
dispatch to ``rest.py``, ``watch.py``, ``discovery.py`` and the reviews; ``pods/log`` and
``pods/exec`` go to the node agent's sources (``logs.py``, ``exec.py``), exec as a WebSocket
upgrade that ``httpserver.py`` hands over through ``Response.upgrade``.

Transport-free: ``httpserver.py`` builds a ``Request`` and writes the ``Response``; tests of the
protocol go through real HTTP anyway.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from amber_sandbox.apiserver import (
    discovery,
    errors,
    logs,
    openapi,
    protobuf,
    rbac,
    resources,
    rest,
    reviews,
    selectors,
    store,
    tables,
    watch,
    websocket,
)
from amber_sandbox.apiserver import exec as pod_exec
from amber_sandbox.wire import Obj

log = logging.getLogger(__name__)

JSON = "application/json"
TABLE_JSON = "application/json;as=Table;v=v1;g=meta.k8s.io"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    #: lower-cased header name -> values
    headers: dict[str, list[str]]
    body: bytes = b""
    client_gone: Callable[[], bool] = lambda: False
    #: every value of each query parameter (``command`` of pods/exec repeats); ``query`` keeps
    #: the first
    query_all: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    stream: Iterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: With status 101: called with the connection once the answer's head is sent; it owns the
    #: connection until it returns (WebSocket streams such as pods/exec).
    upgrade: Callable[[websocket.Upgraded], None] | None = None


def _json(status: int, doc: Any, content_type: str = JSON) -> Response:
    return Response(status, store.encode(doc), content_type)


def _status_success(*, code: int = 200, details: Obj | None = None) -> Obj:
    out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        out["details"] = details
    if code != 200:
        out["code"] = code
    return out


@dataclass(frozen=True)
class Target:
    """What a resource path names."""

    group: str
    version: str
    plural: str
    namespace: str | None  # None: not namespaced in the path
    name: str
    subresource: str
    legacy_watch: bool


_NOT_ALLOWED = errors.ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")


def parse_path(parts: list[str]) -> Target | None:
    """``parts`` after ``/api`` or ``/apis``: resolve group, version and the rest."""
    if parts[0] == "api":
        if len(parts) < 3 or parts[1] != "v1":
            return None
        group, version, rest_ = "", "v1", parts[2:]
    else:
        if len(parts) < 4:
            return None
        group, version, rest_ = parts[1], parts[2], parts[3:]
    legacy_watch = False
    if rest_ and rest_[0] == "watch":
        legacy_watch, rest_ = True, rest_[1:]
    if not rest_:
        return None
    if rest_[0] == "namespaces" and len(rest_) >= 3 and not (
            group == "" and len(rest_) == 3 and rest_[2] in ("status", "finalize")):
        namespace = rest_[1]
        rest_ = rest_[2:]
        if len(rest_) > 3:
            return None
        return Target(group, version, rest_[0], namespace, rest_[1] if len(rest_) > 1 else "",
                      rest_[2] if len(rest_) > 2 else "", legacy_watch)
    if len(rest_) > 3:
        return None
    return Target(group, version, rest_[0], None, rest_[1] if len(rest_) > 1 else "",
                  rest_[2] if len(rest_) > 2 else "", legacy_watch)


class Handler:
    def __init__(self, *, api: rest.Rest, tokens: rbac.Tokens, authorizer: rbac.Authorizer,
                 log_source: Callable[[], logs.LogSource], address: str,
                 exec_source: Callable[[], pod_exec.ExecSource | None] = lambda: None) -> None:
        self.api = api
        self.registry = api.registry
        self.store = api.store
        self.tokens = tokens
        self.authorizer = authorizer
        self.log_source = log_source
        self.exec_source = exec_source
        self.address = address

    def handle(self, req: Request) -> Response:
        try:
            return self._handle(req)
        except errors.ApiError as e:
            return _json(e.code, e.status())
        except Exception as e:  # a bug must answer 500, not drop the connection
            log.exception("sandbox apiserver: %s %s failed", req.method, req.path)
            err = errors.internal(f"{type(e).__name__}: {e}")
            return _json(err.code, err.status())

    # ---------------------------------------------------------------------------------------

    def _user(self, req: Request) -> rbac.User:
        user = self.tokens.authenticate(req.header("authorization"))
        if user is None:
            raise errors.unauthorized()
        as_user = req.header("impersonate-user")
        as_groups = req.headers.get("impersonate-group", [])
        if not as_user and not as_groups:
            return user
        checks = [("users", as_user, "")] if as_user else []
        if as_user.startswith("system:serviceaccount:"):
            _, _, ns, sa = as_user.split(":", 3)
            checks = [("serviceaccounts", sa, ns)]
        checks += [("groups", g, "") for g in as_groups]
        for resource, name, ns in checks:
            attrs = rbac.Attributes(user=user, verb="impersonate", resource=resource, name=name,
                                    namespace=ns)
            if not self.authorizer.authorize(attrs).allowed:
                raise errors.forbidden(
                    resource=resource, group="", name=name,
                    why=f'User "{user.name}" cannot impersonate resource "{resource}" in API '
                        'group "" at the cluster scope')
        groups = tuple(as_groups)
        if as_user.startswith("system:serviceaccount:"):
            groups += ("system:serviceaccounts",
                       f"system:serviceaccounts:{as_user.split(':')[2]}")
        return rbac.User(as_user or user.name, groups).with_authenticated()

    def _authorize(self, attrs: rbac.Attributes) -> None:
        if self.authorizer.authorize(attrs).allowed:
            return
        user = attrs.user.name
        if not attrs.resource_request:
            raise errors.ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot '
                                                    f'{attrs.verb} path "{attrs.path}"')
        res = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace \
            else "at the cluster scope"
        raise errors.forbidden(
            resource=attrs.resource, group=attrs.group, name=attrs.name,
            why=f'User "{user}" cannot {attrs.verb} resource "{res}" in API group '
                f'"{attrs.group}" {scope}')

    def _handle(self, req: Request) -> Response:
        user = self._user(req)
        path = req.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        target = parse_path(parts) if parts and parts[0] in ("api", "apis") else None
        if target is None:
            verb = {"GET": "get", "HEAD": "head", "POST": "post", "PUT": "put",
                    "PATCH": "patch", "DELETE": "delete"}.get(req.method, req.method.lower())
            self._authorize(rbac.Attributes(user=user, verb=verb, path=path,
                                            resource_request=False))
            return self._non_resource(req, path, parts)
        return self._resource(req, user, target)

    # ---------------------------------------------------------------------------------------
    # discovery and other non-resource paths

    def _non_resource(self, req: Request, path: str, parts: list[str]) -> Response:
        if req.method != "GET":
            raise _NOT_ALLOWED
        aggregated = discovery.AGGREGATED_V2 in req.header("accept").replace(" ", "")
        if path == "/version":
            return _json(200, discovery.version())
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/api":
            if aggregated:
                return _json(200, discovery.aggregated(self.registry, core=True),
                             discovery.AGGREGATED_V2)
            return _json(200, discovery.api_versions(self.address))
        if path == "/apis":
            if aggregated:
                return _json(200, discovery.aggregated(self.registry, core=False),
                             discovery.AGGREGATED_V2)
            return _json(200, discovery.api_group_list(self.registry))
        if path == "/openapi/v2":
            accept = req.header("accept")
            if openapi.V2_PROTOBUF in accept or openapi.V2_PROTOBUF_RESPONSE in accept:
                return Response(200, openapi.v2_protobuf(), openapi.V2_PROTOBUF_RESPONSE)
            return _json(200, openapi.v2_json())
        if path == "/openapi/v3":
            return _json(200, openapi.root(self.registry))
        if path.startswith("/openapi/v3/"):
            gv = parts[2:]
            found = openapi.group_version_doc(
                self.registry, gv[1] if gv[0] == "apis" and len(gv) == 3 else "",
                gv[-1]) if gv and gv[0] in ("api", "apis") else None
            if found is not None:
                return _json(200, found)
        if path == "/api/v1":
            doc = discovery.resource_list(self.registry, "", "v1")
            if doc is not None:
                return _json(200, doc)
        if len(parts) == 2 and parts[0] == "apis":
            doc = discovery.api_group(self.registry, parts[1])
            if doc is not None:
                return _json(200, doc)
        if len(parts) == 3 and parts[0] == "apis":
            doc = discovery.resource_list(self.registry, parts[1], parts[2])
            if doc is not None:
                return _json(200, doc)
        raise errors.path_not_found()

    # ---------------------------------------------------------------------------------------
    # resources

    def _resource(self, req: Request, user: rbac.User, t: Target) -> Response:
        q = req.query
        is_watch = t.legacy_watch or q.get("watch", "") in ("1", "true", "True")
        collection = not t.name
        if t.plural == "namespaces" and t.group == "" and t.namespace is None:
            namespace = t.name
        else:
            namespace = t.namespace or ""
        method = req.method
        if collection:
            verb = {"GET": "watch" if is_watch else "list", "POST": "create",
                    "DELETE": "deletecollection"}.get(method)
        elif t.subresource in ("log",):
            verb = "get" if method == "GET" else None
        elif t.subresource == "exec":
            # a WebSocket upgrade is a GET, SPDY a POST: RBAC sees "get" and "create"
            verb = {"GET": "get", "POST": "create"}.get(method)
        elif t.subresource in ("binding", "token"):
            verb = "create" if method == "POST" else None
        else:
            verb = {"GET": "watch" if t.legacy_watch else "get", "PUT": "update",
                    "PATCH": "patch", "DELETE": "delete"}.get(method)
        self._authorize(rbac.Attributes(user=user, verb=verb or method.lower(),
                                        namespace=namespace, group=t.group, resource=t.plural,
                                        subresource=t.subresource, name=t.name))
        rt = self.registry.lookup(t.group, t.version, t.plural)
        if rt is None:
            raise errors.path_not_found()
        if t.namespace is not None and not rt.namespaced:
            raise errors.path_not_found()
        if t.namespace is None and rt.namespaced and not collection:
            raise errors.path_not_found()
        if t.subresource and not rt.has(t.subresource):
            raise errors.path_not_found()
        if verb is None:
            raise _NOT_ALLOWED
        scope: str | None = t.namespace if rt.namespaced else None
        if not rt.stored:
            if verb != "create":
                raise errors.method_not_allowed(verb=verb, resource=rt.plural, group=rt.group)
            answer = reviews.review(rt, _body(req, rt), caller=user, namespace=namespace,
                                    authorizer=self.authorizer)
            return _json(201, answer)
        dry_run = q.get("dryRun") == "All"
        if verb in ("list", "watch") and collection:
            if rt.namespaced and t.namespace is None and method != "GET":
                raise _NOT_ALLOWED
            return self._list_or_watch(req, rt, scope, watching=is_watch)
        if verb == "watch":
            return self._watch_one(req, rt, scope, t.name)
        if verb == "create" and collection:
            if rt.namespaced and t.namespace is None:
                raise _NOT_ALLOWED
            stored = self.api.create(rt, namespace, _body(req, rt), dry_run=dry_run)
            return self._object(req, rt, stored, 201)
        if verb == "deletecollection":
            if rt.namespaced and t.namespace is None:
                raise _NOT_ALLOWED
            deleted = self.api.delete_collection(
                rt, scope, labels=selectors.parse_labels(q.get("labelSelector", "")),
                fields=selectors.parse_fields(q.get("fieldSelector", ""),
                                              supported=rt.field_labels),
                options=_delete_options(req))
            return self._list_response(req, rt, deleted, rv=self.store.resource_version)
        if t.subresource == "log":
            return self._log(req, rt, namespace, t.name)
        if t.subresource == "exec":
            return self._exec(req, user, rt, namespace, t.name)
        if t.subresource == "binding":
            self.api.bind(rt, namespace, t.name, _body(req))
            return _json(201, _status_success(code=201))
        if t.subresource == "token":
            return self._token(req, rt, namespace, t.name)
        if t.subresource == "scale":
            return self._scale(req, rt, namespace, t.name, verb=verb, dry_run=dry_run)
        if verb == "get":
            return self._object(req, rt, self.api.get(rt, namespace, t.name), 200)
        if verb == "update":
            stored, created = self.api.update(rt, namespace, t.name, _body(req, rt),
                                              subresource=t.subresource, dry_run=dry_run)
            return self._object(req, rt, stored, 201 if created else 200)
        if verb == "patch":
            content_type = req.header("content-type").split(";")[0].strip()
            if content_type not in rest.PATCH_TYPES:
                raise errors.unsupported_media_type(content_type, list(rest.PATCH_TYPES))
            stored = self.api.patch(rt, namespace, t.name, content_type, req.body,
                                    subresource=t.subresource, dry_run=dry_run)
            return self._object(req, rt, stored, 200)
        if verb == "delete":
            result = self.api.delete(rt, namespace, t.name, _delete_options(req))
            if result.gone and not rt.returns_deleted_object:
                meta = result.stored.meta
                details: Obj = {"name": meta["name"], "kind": rt.plural, "uid": meta.get("uid")}
                if rt.group:
                    details["group"] = rt.group
                return _json(200, _status_success(details=details))
            return self._object(req, rt, result.stored, 200)
        raise _NOT_ALLOWED

    # ---------------------------------------------------------------------------------------

    def _present(self, rt: resources.ResourceType, stored: store.Stored) -> bytes:
        """The object as this version serves it (custom resources stored under another version
        differ only in apiVersion: conversion strategy None)."""
        if rt.custom and stored.obj.get("apiVersion") != rt.api_version:
            obj = stored.copy()
            obj["apiVersion"] = rt.api_version
            return store.encode(obj)
        return stored.raw

    def _object(self, req: Request, rt: resources.ResourceType, stored: store.Stored,
                code: int) -> Response:
        if req.method == "GET" and tables.wants_table(req.header("accept")):
            meta = {"resourceVersion": stored.meta.get("resourceVersion", "")}
            doc = tables.table(rt, [json.loads(self._present(rt, stored))], list_meta=meta,
                               include=req.query.get("includeObject", "Metadata"),
                               now=self.api.clock())
            return _json(code, doc, TABLE_JSON)
        return Response(code, self._present(rt, stored))

    def _list_or_watch(self, req: Request, rt: resources.ResourceType, scope: str | None, *,
                       watching: bool) -> Response:
        q = req.query
        labels = selectors.parse_labels(q.get("labelSelector", ""))
        fields = selectors.parse_fields(q.get("fieldSelector", ""), supported=rt.field_labels)
        if watching:
            return self._watch(req, rt, scope, labels, fields)
        limit = _int_param(q, "limit") or 0
        result = self.api.list_objects(rt, scope, labels=labels, fields=fields, limit=limit,
                               continue_token=q.get("continue", ""))
        return self._list_response(req, rt, result.items, rv=result.resource_version,
                                   token=result.continue_token, remaining=result.remaining)

    def _list_response(self, req: Request, rt: resources.ResourceType,
                       items: list[store.Stored], *, rv: int, token: str = "",
                       remaining: int | None = None) -> Response:
        meta: Obj = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
        if remaining is not None:
            meta["remainingItemCount"] = remaining
        if req.method == "GET" and tables.wants_table(req.header("accept")):
            doc = tables.table(rt, [json.loads(self._present(rt, s)) for s in items],
                               list_meta=meta, include=req.query.get("includeObject", "Metadata"),
                               now=self.api.clock())
            return _json(200, doc, TABLE_JSON)
        head = (b'{"kind":"' + rt.list_kind.encode() + b'","apiVersion":"'
                + rt.api_version.encode() + b'","metadata":' + store.encode(meta)
                + b',"items":[')
        return Response(200, head + b",".join(self._present(rt, s) for s in items) + b"]}")

    def _watch(self, req: Request, rt: resources.ResourceType, scope: str | None,
               labels: selectors.LabelSelector, fields: selectors.FieldSelector) -> Response:
        q = req.query
        rv = q.get("resourceVersion", "")
        if rv and not rv.isdigit():
            raise errors.bad_request(f'invalid resource version "{rv}"')
        timeout = _int_param(q, "timeoutSeconds")
        initial = q.get("sendInitialEvents")
        spec = watch.WatchRequest(
            rt=rt, namespace=scope, labels=labels, fields=fields, resource_version=rv,
            timeout=float(timeout) if timeout else None,
            bookmarks=q.get("allowWatchBookmarks") in ("1", "true", "True"),
            send_initial_events=None if initial is None else initial in ("1", "true", "True"))
        as_table = tables.wants_table(req.header("accept"))
        include = q.get("includeObject", "Metadata")

        def render(stored: store.Stored) -> bytes:
            data = self._present(rt, stored)
            if not as_table:
                return data
            return store.encode(tables.table(rt, [json.loads(data)], list_meta={},
                                             include=include, now=self.api.clock()))

        events = watch.stream(spec, self.store, render=render, client_gone=req.client_gone)
        return Response(200, stream=events, content_type=TABLE_JSON if as_table else JSON)

    def _watch_one(self, req: Request, rt: resources.ResourceType, scope: str | None,
                   name: str) -> Response:
        fields = selectors.FieldSelector((selectors.FieldTerm("metadata.name", name, False),))
        return self._watch(req, rt, scope, selectors.EVERYTHING, fields)

    def _scale(self, req: Request, rt: resources.ResourceType, namespace: str, name: str, *,
               verb: str, dry_run: bool) -> Response:
        if verb == "get":
            scale = self.api.scale_of(rt, self.api.get(rt, namespace, name))
            return _json(200, scale)
        if verb == "update":
            stored = self.api.update_scale(rt, namespace, name, _body(req), dry_run=dry_run)
            return Response(200, stored.raw)
        if verb == "patch":
            content_type = req.header("content-type").split(";")[0].strip()
            stored = self.api.patch(rt, namespace, name, content_type, req.body,
                                    subresource="scale", dry_run=dry_run)
            return Response(200, stored.raw)
        raise _NOT_ALLOWED

    def _log(self, req: Request, rt: resources.ResourceType, namespace: str,
             name: str) -> Response:
        pod = self.api.get(rt, namespace, name).obj
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = req.query.get("container", "")
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(f"a container name must be specified for pod {name}, "
                                         f"choose one of: [{' '.join(map(str, containers))}]")
            container = str(containers[0])
        elif container not in containers and container not in [
                c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        previous = req.query.get("previous") in ("1", "true")
        tail_lines = _int_param(req.query, "tailLines")
        limit_bytes = _int_param(req.query, "limitBytes")
        not_yet = errors.ApiError(404, "NotFound",
                                  f'the log of container "{container}" in pod "{name}" is not '
                                  "available yet",
                                  {"name": name, "kind": "pods"})
        source = self.log_source()
        if req.query.get("follow") in ("1", "true", "True") and \
                isinstance(source, logs.FollowSource):
            chunks = source.follow(namespace=namespace, pod=name, container=container,
                                   previous=previous, tail_lines=tail_lines,
                                   client_gone=req.client_gone)
            if chunks is None:
                raise not_yet
            return Response(200, content_type="text/plain",
                            stream=_limited(chunks, limit_bytes))
        data = source.read(namespace=namespace, pod=name, container=container,
                           previous=previous)
        if data is None:
            raise not_yet
        data = logs.select(data, tail_lines=tail_lines, limit_bytes=limit_bytes)
        return Response(200, data, "text/plain")

    def _exec(self, req: Request, user: rbac.User, rt: resources.ResourceType,
              namespace: str, name: str) -> Response:
        """Start the command through the node agent's ExecSource and hand the upgraded
        connection to the session (see exec.py)."""
        if req.method == "GET":
            # Kubernetes 1.35 (AuthorizePodWebsocketUpgradeCreatePermission, on by default):
            # the WebSocket upgrade, a GET, also needs "create", as SPDY's POST always did.
            self._authorize(rbac.Attributes(user=user, verb="create", namespace=namespace,
                                            resource="pods", subresource="exec", name=name))
        options = pod_exec.Options.parse(req.query_all)
        pod = self.api.get(rt, namespace, name).obj
        spec = pod.get("spec") or {}
        names = [str(c.get("name")) for c in spec.get("containers") or []]
        container = options.container
        if not container:
            container = names[0] if names else ""
            options = pod_exec.Options(options.command, container, options.stdin,
                                       options.stdout, options.stderr, options.tty)
        elif container not in names + [str(c.get("name"))
                                       for c in spec.get("initContainers") or []]:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        if not options.command:
            raise errors.bad_request("you must specify at least 1 command")
        if not (options.stdin or options.stdout or options.stderr):
            raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise errors.bad_request(f"cannot exec into a container in a completed pod; "
                                     f"current phase is {phase}")
        # validation first, so a SPDY fallback (kubectl) shows the real error
        if not websocket.wants_upgrade(req.header("connection"), req.header("upgrade")):
            if req.header("upgrade"):
                raise errors.bad_request(
                    f"unsupported upgrade protocol {req.header('upgrade')!r}: the sandbox "
                    "serves pods/exec over WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) "
                    "only, not SPDY")
            raise errors.bad_request("Upgrade request required")
        protocol = websocket.choose_protocol(req.headers.get("sec-websocket-protocol", []),
                                             pod_exec.PROTOCOLS)
        if protocol is None:
            raise errors.bad_request("none of the offered WebSocket subprotocols is supported; "
                                     f"use one of {', '.join(pod_exec.PROTOCOLS)}")
        key = req.header("sec-websocket-key")
        if not key:
            raise errors.bad_request("Sec-WebSocket-Key is missing")
        source = self.exec_source()
        if source is None:
            raise errors.bad_request(f"no node agent serves exec for pod {name}")
        try:
            session = pod_exec.Session(source, namespace=namespace, pod=name, options=options)
        except LookupError as e:
            raise errors.ApiError(404, "NotFound", f"unable to upgrade connection: {e}") from None
        except (RuntimeError, OSError) as e:
            raise errors.bad_request(f"unable to upgrade connection: {e}") from None
        return Response(101, headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                      "Sec-WebSocket-Accept": websocket.accept_key(key),
                                      "Sec-WebSocket-Protocol": protocol},
                        upgrade=lambda upgraded: session.serve(upgraded, protocol))

    def _token(self, req: Request, rt: resources.ResourceType, namespace: str,
               name: str) -> Response:
        sa = self.api.get(rt, namespace, name)
        token_type = resources.ResourceType("authentication.k8s.io", "v1", "tokenrequests",
                                            "TokenRequest", True)
        body = _body(req, token_type) if req.body else {}
        spec = dict((body.get("spec") if isinstance(body, dict) else None) or {})
        seconds = int(spec.get("expirationSeconds") or 3600)
        spec["expirationSeconds"] = seconds
        spec.setdefault("audiences", [])
        token = "sandbox-sa-" + secrets.token_urlsafe(32)
        expires_at = time.time() + seconds
        self.tokens.add(token, rbac.service_account_user(namespace, name, sa.uid),
                        expires_at=expires_at)
        answer = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                  "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
                  "spec": spec,
                  "status": {"token": token, "expirationTimestamp": rest.timestamp(expires_at)}}
        return _json(201, answer)


def _limited(chunks: Iterator[bytes], limit: int | None) -> Iterator[bytes]:
    """``limitBytes`` over a followed log: stop once that much was sent."""
    try:
        left = limit
        for data in chunks:
            chunk = data if left is None else data[:left]
            if left is not None:
                left -= len(chunk)
            if chunk:
                yield chunk
            if left is not None and left <= 0:
                return
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _body(req: Request, rt: resources.ResourceType | None = None) -> Any:
    if req.header("content-type").split(";")[0].strip() == protobuf.MEDIA_TYPE:
        return protobuf.decode(req.body, kind=rt.kind if rt else "")
    try:
        return json.loads(req.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise errors.bad_request("the body of the request was in an unknown format - accepted "
                                 "media types include: application/json") from None


def _int_param(q: dict[str, str], name: str) -> int | None:
    value = q.get(name)
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise errors.bad_request(f"{name}: invalid value {value!r}") from None


def _delete_options(req: Request) -> rest.DeleteOptions:
    body: Any = {}
    if req.body.strip():
        body = _body(req)
    if not isinstance(body, dict):
        body = {}
    q = req.query
    policy = q.get("propagationPolicy") or body.get("propagationPolicy")
    orphan = q.get("orphanDependents", body.get("orphanDependents"))
    if policy is None and orphan is not None:
        policy = "Orphan" if str(orphan).lower() == "true" else "Background"
    grace_q = _int_param(q, "gracePeriodSeconds")
    grace = grace_q if grace_q is not None else body.get("gracePeriodSeconds")
    pre = body.get("preconditions") or {}
    dry = q.get("dryRun") == "All" or body.get("dryRun") == ["All"]
    return rest.DeleteOptions(propagation=policy, grace_period=grace, uid=pre.get("uid"),
                              resource_version=pre.get("resourceVersion"), dry_run=dry)
