"""Prometheus metrics of HTTP requests, per route: recorded by ``Guard`` for every request.

``route`` is the template of the route that answered (``/customer/open/v1/customers/{customer_id}``:
the mount's prefix, the prefix a router was included with, then the route's own path), never the
raw path, so the number of series stays bounded whatever clients ask for. A path that matched no
route is ``unmatched`` (so is a request refused before routing: 413, 415); a static file is its
mount's ``…/{path}``. ``method`` is one of the standard methods or ``other``.

The template is worked out once per route (and mount) and kept; each series' children are kept
too, so a request costs two dictionary lookups, a counter increment and a histogram observation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "bitbybit_http_requests_total",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "bitbybit_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template, method and status",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_ANSWER = 0
"""The status recorded when no answer was started (the client went away first)."""


def _relative_path(path: str, root_path: str) -> str:
    """``path`` below ``root_path`` (the part a router inside a mount matches)."""
    if root_path and path.startswith(root_path):
        return path[len(root_path) :]
    return path


class RouteMetrics:
    """What one application's requests record; one per ``Guard`` (so per application: the
    routes it caches stay alive with it)."""

    def __init__(self) -> None:
        self._templates: dict[tuple[int, str], tuple[object, str, str]] = {}
        """(id of the route, mount prefix) → (the route, the include prefix, the template)."""
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        """(route, method, status) → (counter child, histogram child)."""
        self._plain: dict[int, object] | None = None
        """The application's plain routes by (the id of) their endpoint, once asked for."""

    def record(self, scope: Mapping[str, Any], root_path: str, status: int, seconds: float) -> None:
        """Count a request whose scope (after routing) is ``scope``; ``root_path`` is the scope's
        root path as it arrived (the server's, before any mount)."""
        method = scope["method"]
        key = (self.route_of(scope, root_path), method if method in METHODS else "other", status)
        children = self._series.get(key)
        if children is None:
            labels = (key[0], key[1], str(status))
            children = (REQUESTS.labels(*labels), REQUEST_SECONDS.labels(*labels))
            self._series[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def route_of(self, scope: Mapping[str, Any], root_path: str) -> str:
        """The template of the route that answered, from the routing's marks in the scope:
        ``scope["route"]`` (the route matched, by Starlette and FastAPI) and ``root_path``
        (lengthened by each mount that matched)."""
        root = scope.get("root_path", "")
        mount = root[len(root_path) :] if root.startswith(root_path) else root
        route = scope.get("route")
        if route is None or hasattr(route, "routes"):  # none named, or a mount and no further
            endpoint = scope.get("endpoint")
            if endpoint is None or hasattr(endpoint, "routes"):  # no route, or a mount's only
                return UNMATCHED
            route = self._plain_route(scope, endpoint)
            if route is None:  # an application mounted whole (static files)
                return f"{mount}/{{path}}" if mount else UNMATCHED
        path = _relative_path(scope["path"], root)
        known = self._templates.get((id(route), mount))
        if known is not None and known[0] is route and path.startswith(known[1]):
            return known[2]
        return self._template(route, mount, path, scope.get("path_params", {}))

    def _plain_route(self, scope: Mapping[str, Any], endpoint: object) -> object | None:
        """The route of ``endpoint`` among the application's own routes: FastAPI names only its
        own kind of route in the scope, not a plain Starlette one (``/docs``, ``/openapi.json``)."""
        if self._plain is None:
            router = scope.get("router")
            self._plain = {
                id(route.endpoint): route
                for route in getattr(router, "routes", ())
                if hasattr(route, "endpoint") and hasattr(route, "path_regex")
            }
        return self._plain.get(id(endpoint))

    def _template(self, route: Any, mount: str, path: str, params: Mapping[str, Any]) -> str:
        """Work out (and keep) a route's template. A route included in a router with a prefix
        may know only its own path (newer FastAPI no longer copies it with the prefix): the
        prefix is the start of ``path`` before the part the route's pattern matches with the
        parameters routing found. (A route included twice, under two prefixes of which one
        starts the other, would be labelled with the one seen first.)"""
        regex = getattr(route, "path_regex", None)
        own = getattr(route, "path_format", None) or getattr(route, "path", None)
        if regex is None or not isinstance(own, str):
            return UNMATCHED
        convertors = getattr(route, "param_convertors", {})
        starts = [0, *(i for i in range(1, len(path)) if path[i] == "/"), len(path)]
        for start in starts:
            found = regex.match(path[start:])
            if found is None:
                continue
            if all(
                name in params
                and (convertors[name].convert(value) if name in convertors else value)
                == params[name]
                for name, value in found.groupdict().items()
            ):
                prefix = path[:start]
                break
        else:  # the route matched something else: its own path is the best there is
            prefix = ""
        template = f"{mount}{prefix}{own}"
        self._templates[(id(route), mount)] = (route, prefix, template)
        return template
