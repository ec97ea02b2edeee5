"""``Direct``: the API's routes answered without FastAPI's general request path, with its result.

FastAPI takes a request through an exception middleware, an exit-stack middleware, its router
(each mount, each included router, each route), the route's wrapper and ``solve_dependencies``,
which handles every kind of parameter any application may declare. For one write that was
56-63 % of its CPU (``bench/bench_api_overhead.py``). This layer, just inside ``Guard``, takes a
request for one of the mounted API families straight to its endpoint when it can be sure of
giving the same answer, and hands every other request, unchanged, to FastAPI:

- **The route** is the one FastAPI's router picks: the first route of the family, in the order
  they were included, whose path and method both match. A literal path is looked up in a table
  built with that rule; a path with parameters is matched route by route, in order.
- **The plan** of a route is FastAPI's own analysis of its endpoint (``dependant``), taken only
  when every parameter is of a kind handled here: path, query and header parameters, one JSON
  body, the ``Request``, and dependencies that take nothing but the ``Request``
  (authentication). Any other route always goes to FastAPI.
- **The values** are worked out by FastAPI's own functions (``request_params_to_args``,
  ``request_body_to_args``), from the body parsed as FastAPI parses it (``json.loads``).
- **Anything unusual goes to FastAPI before any dependency runs**: a body that is not JSON of a
  JSON media type, nests too deep or does not parse, a parameter or a body that does not
  validate, dependency overrides in force. Validation is pure, so such a request is answered
  exactly as without this layer, its validation error included, and is authenticated and
  counted once.
- **Then** the dependencies run (authentication raises the 401/403/429), then the endpoint,
  whose answer must be a ``Response``; an exception is answered by the application's own
  exception handlers, found as Starlette's exception middleware finds them, and one they do not
  handle rises to ``Guard`` (500).

The scope is marked as routing marks it (``route``, ``endpoint``, ``path_params``, the mount's
``root_path``), so the handlers, ``check_access`` and the route metrics read the same scope.
``tests/contract/test_direct.py`` holds the two paths to the same answers.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI, params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import AliasChoices
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bitbybit.api.middleware import BODY_METHODS, JSON_TYPES, replay
from bitbybit.limits import too_deep

if TYPE_CHECKING:
    from fastapi._compat import ModelField  # the type of FastAPI's analysed parameters

Handler = Callable[[Request, Exception], Awaitable[Response]]


class Unplanned(Exception):
    """A route this layer does not take: its requests all go to FastAPI."""


@dataclass(frozen=True)
class Dependency:
    call: Callable[..., Awaitable[Any]]
    name: str | None
    request_param: str | None
    use_cache: bool


UNCHANGING = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Params:
    """A route's query or header parameters, and the values FastAPI gives them in a request that
    sends none of them (worked out once, by FastAPI, from an empty set)."""

    fields: tuple[ModelField, ...]
    unsent: Mapping[str, Any] | None
    """None when those values are not all plain constants (or some parameter is required)."""
    names: frozenset[str]
    """Every name, lowercased, under which FastAPI could find one of them (header parameters:
    a request whose headers have none of these sends none of them)."""

    @classmethod
    def of(cls, fields: Iterable[ModelField], empty: Mapping[str, Any]) -> Params:
        fields = tuple(fields)
        values, errors = request_params_to_args(fields, empty)
        unsent = None if errors or not _constants(values) else values
        names: set[str] = set()
        for field in fields:
            alias = field.field_info.validation_alias
            if isinstance(alias, AliasChoices) and all(isinstance(c, str) for c in alias.choices):
                names.update(str(choice) for choice in alias.choices)
            elif isinstance(alias, str):
                names.add(alias)
            elif alias is not None:
                unsent = None  # a path into a value: always asked of FastAPI
            names.update((field.alias, field.name, field.name.replace("_", "-")))
        return cls(fields, unsent, frozenset(name.lower() for name in names))

    def sent_headers(self, scope: Scope) -> bool:
        names = self.names
        return any(name.decode("latin-1") in names for name, _ in scope["headers"])


def _constants(values: Mapping[str, Any]) -> bool:
    return all(isinstance(value, UNCHANGING) for value in values.values())


@dataclass(frozen=True)
class Plan:
    """What a route's endpoint needs, from FastAPI's analysis of it."""

    route: Any  # FastAPI's route context: the route as included (its dependant, its fields)
    original: APIRoute
    endpoint: Callable[..., Awaitable[Any]]
    solved: tuple[Dependency, ...]
    path_fields: tuple[ModelField, ...]
    query: Params
    headers: Params
    body_fields: tuple[ModelField, ...]
    embed_body: bool
    request_param: str | None

    @classmethod
    def of(cls, route: Any) -> Plan:
        """The plan of a route (a FastAPI route context), or ``Unplanned``."""
        original = route.original_route
        dependant: Dependant | None = route.dependant
        if not isinstance(original, APIRoute) or dependant is None:
            raise Unplanned("not an API route")
        if getattr(route, "max_body_size", None) is not None:
            raise Unplanned("a body limit of its own")
        _simple(dependant, top=True)
        solved = []
        for sub in dependant.dependencies:
            _simple(sub, top=False)
            solved.append(Dependency(sub.call, sub.name, sub.request_param_name, sub.use_cache))  # type: ignore[arg-type]
        return cls(
            route=route,
            original=original,
            endpoint=dependant.call,  # type: ignore[arg-type]
            solved=tuple(solved),
            path_fields=tuple(dependant.path_params),
            query=Params.of(dependant.query_params, QueryParams()),
            headers=Params.of(dependant.header_params, Headers()),
            body_fields=tuple(dependant.body_params),
            embed_body=bool(route._embed_body_fields),
            request_param=dependant.request_param_name,
        )


def _simple(dependant: Dependant, *, top: bool) -> None:
    """Refuse (``Unplanned``) whatever this layer does not do as FastAPI does."""
    call = dependant.call
    if call is None or not _is_coroutine_function(call):
        raise Unplanned("not a coroutine")
    others = (
        dependant.cookie_params,
        dependant.http_connection_param_name,
        dependant.websocket_param_name,
        dependant.background_tasks_param_name,
        dependant.response_param_name,
        dependant.security_scopes_param_name,
    )
    if any(others):
        raise Unplanned("a kind of parameter not taken here")
    if top:
        annotation = inspect.signature(call, eval_str=True).return_annotation
        if not (isinstance(annotation, type) and issubclass(annotation, Response)):
            raise Unplanned("an answer FastAPI would serialize")
        if len(dependant.body_params) > 1:
            raise Unplanned("more than one body parameter")
        if any(isinstance(f.field_info, params.Form) for f in dependant.body_params):
            raise Unplanned("a form body (files included)")
        return
    if (
        dependant.dependencies
        or dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.body_params
        or dependant.concurrency is not None
    ):
        raise Unplanned("a dependency that needs more than the request")


def _is_coroutine_function(call: Any) -> bool:
    if inspect.iscoroutinefunction(call):
        return True
    method = getattr(call, "__call__", None)  # noqa: B004 - a callable instance's method
    return not inspect.isfunction(call) and inspect.iscoroutinefunction(method)


@dataclass(frozen=True)
class Family:
    """One mount of an API family: its prefix and its routes in the router's order."""

    prefix: str
    router: ASGIApp
    patterns: tuple[tuple[re.Pattern[str], frozenset[str], Mapping[str, Any], Plan | None], ...]
    literal: Mapping[tuple[str, str], Plan | None]
    """(method, path below the prefix) → the plan of the route picked, where that route has no
    parameters and no route before it matches the path."""

    @classmethod
    def of(cls, prefix: str, router: ASGIApp, routes: Iterable[Any]) -> Family:
        patterns: list[tuple[re.Pattern[str], frozenset[str], Mapping[str, Any], Plan | None]] = []
        literal: dict[tuple[str, str], Plan | None] = {}
        for route in routes:
            regex = route.path_regex
            methods = frozenset(route.methods or ())
            try:
                plan: Plan | None = Plan.of(route)
            except Unplanned:
                plan = None
            if not route.param_convertors and methods:
                path = route.path
                for method in methods:
                    earlier = any(
                        p.match(path) and (not ms or method in ms) for p, ms, _, _ in patterns
                    )
                    if not earlier:
                        literal.setdefault((method, path), plan)
            patterns.append((regex, methods, route.param_convertors, plan))
        return cls(prefix, router, tuple(patterns), literal)

    def find(self, method: str, path: str) -> tuple[Plan, dict[str, Any]] | None:
        """The plan of the route FastAPI would pick and its path parameters; None when that
        route has no plan or no route matches path and method (FastAPI answers 404/405)."""
        key = (method, path)
        if key in self.literal:
            plan = self.literal[key]
            return None if plan is None else (plan, {})
        for regex, methods, convertors, plan in self.patterns:
            found = regex.match(path)
            if found is None or (methods and method not in methods):
                continue
            if plan is None:
                return None
            params = {k: convertors[k].convert(v) for k, v in found.groupdict().items()}
            return plan, params
        return None


def families(app: FastAPI) -> tuple[Family, ...]:
    """The application's mounts of API routers that no route before them can shadow."""
    found = []
    before: list[str] = []
    for route in app.router.routes:
        if isinstance(route, Mount) and hasattr(route.app, "routes"):
            prefix = route.path
            shadowed = any(p == prefix or p.startswith(prefix + "/") for p in before)
            if not shadowed:
                found.append(Family.of(prefix, route.app, iter_route_contexts(route.app.routes)))
            before.append(prefix + "/{path}")
        elif isinstance(route, Route) and "{" not in route.path:
            before.append(route.path)
        else:
            break  # a route whose paths cannot be listed: no mount after it is taken
    return tuple(found)


class Direct:
    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.families = families(api)
        self.handlers: dict[Any, Handler] = {}
        self.status_handlers: dict[int, Handler] = {}
        for key, handler in api.exception_handlers.items():
            if key in (500, Exception):
                continue  # answered by Guard, as without this layer
            if not inspect.iscoroutinefunction(handler):
                self.families = ()  # Starlette would run it in a thread: all goes to FastAPI
            chosen = self.status_handlers if isinstance(key, int) else self.handlers
            chosen[key] = cast(Handler, handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path: str = scope["path"]
            for family in self.families:
                if (
                    path.startswith(family.prefix)
                    and path[len(family.prefix) : len(family.prefix) + 1] == "/"
                ):
                    found = family.find(scope["method"], path[len(family.prefix) :])
                    if found is not None:
                        await self._answer(family, *found, scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)

    async def _answer(
        self,
        family: Family,
        plan: Plan,
        path_params: dict[str, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        body: bytes | None = None
        parsed: Any = None
        if plan.body_fields:
            body = await _read(receive)
            parsed = _json(scope, body)
            receive = replay(body, receive)
        if (parsed is None and plan.body_fields) or self.api.dependency_overrides:
            await self.app(scope, receive, send)
            return
        child = {
            "app_root_path": scope.get("app_root_path", ""),
            "root_path": family.prefix,
            "path_params": path_params,
            "endpoint": plan.original.endpoint,
            "route": plan.original,
        }
        routed = {**scope, **child}
        request = Request(routed, receive, send)
        values = _values(plan, request, path_params)
        if values is None or (plan.body_fields and not await _body(plan, parsed, values)):
            await self.app(scope, receive, send)
            return
        scope.update(child)  # as routing marks it, for Guard's metrics
        try:
            cache: dict[Any, Any] = {}
            for dependency in plan.solved:
                key = dependency.call
                if dependency.use_cache and key in cache:
                    solved = cache[key]
                else:
                    args = {dependency.request_param: request} if dependency.request_param else {}
                    solved = cache[key] = await dependency.call(**args)
                if dependency.name is not None:
                    values[dependency.name] = solved
            if plan.request_param:
                values[plan.request_param] = request
            response = await plan.endpoint(**values)
            if not isinstance(response, Response):
                raise TypeError(f"{plan.original.path}: the endpoint answered no Response")
        except Exception as error:
            handler = self._handler(error)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(routed, receive, send)

    def _handler(self, error: Exception) -> Handler | None:
        if isinstance(error, HTTPException) and error.status_code in self.status_handlers:
            return self.status_handlers[error.status_code]
        for cls in type(error).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        return None


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _json(scope: Scope, body: bytes) -> Any:
    """The body as FastAPI parses it, when it is JSON of a JSON media type that nests within
    the limit; None otherwise (FastAPI then answers)."""
    if not body or scope["method"] not in BODY_METHODS:
        return None
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
            break
    media = content_type.split(b";")[0].strip().lower().decode("latin-1")
    if media not in JSON_TYPES or too_deep(body):
        return None
    try:
        return json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return None


def _values(plan: Plan, request: Request, path_params: dict[str, Any]) -> dict[str, Any] | None:
    """The path, query and header values, or None if any does not validate."""
    values: dict[str, Any] = {}
    if plan.path_fields and not _into(values, plan.path_fields, path_params):
        return None
    scope = request.scope
    query, headers = plan.query, plan.headers
    if query.fields:
        if query.unsent is not None and not scope["query_string"]:
            values.update(query.unsent)
        elif not _into(values, query.fields, request.query_params):
            return None
    if headers.fields:
        if headers.unsent is not None and not headers.sent_headers(scope):
            values.update(headers.unsent)
        elif not _into(values, headers.fields, request.headers):
            return None
    return values


def _into(
    values: dict[str, Any], fields: Sequence[ModelField], received: Mapping[str, Any]
) -> bool:
    found, errors = request_params_to_args(fields, received)
    values.update(found)
    return not errors


async def _body(plan: Plan, parsed: Any, values: dict[str, Any]) -> bool:
    """The body's value, validated as FastAPI validates it (its one field, not embedded: the
    field's own validation, which is what ``request_body_to_args`` does then)."""
    if len(plan.body_fields) == 1 and not plan.embed_body:
        field = plan.body_fields[0]
        value, errors = field.validate(parsed, {}, loc=("body",))
        if errors:
            return False
        values[field.name] = value
        return True
    found, errors = await request_body_to_args(
        body_fields=list(plan.body_fields), received_body=parsed, embed_body_fields=plan.embed_body
    )
    if errors:
        return False
    values.update(found)
    return True
