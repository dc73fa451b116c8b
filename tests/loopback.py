"""A real HTTP server on 127.0.0.1 for tests: static files with scripted faults, or dynamic handlers.

>>> import urllib.request
>>> with LoopbackServer() as server:
...     url = server.add("/hello.txt", b"hello")
...     no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
...     no_proxy.open(url, timeout=5).read()
b'hello'
"""

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Handler = Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]


@dataclass
class _Route:
    body: bytes
    status: int
    truncate_to: int | None
    stall_seconds: float | None
    content_type: str
    fail_first: int
    no_length: bool = False
    drip_seconds: float | None = None
    requests_seen: int = 0


class LoopbackServer:
    """A ``ThreadingHTTPServer`` on an ephemeral port of 127.0.0.1, served from a daemon thread.

    Use as a context manager. ``requests`` lists the paths requested, in order; unknown paths
    get HTTP 404.
    """

    def __init__(self):
        self.requests: list[str] = []
        self._routes: dict[str, _Route] = {}
        self._handlers: list[tuple[str, Handler]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), _RequestHandler)
        self._server.loopback = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving; stalled responses wake up at once instead of sleeping on."""
        self._closing.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add(
        self,
        path: str,
        body: bytes,
        *,
        status: int = 200,
        truncate_to: int | None = None,
        stall_seconds: float | None = None,
        content_type: str = "application/octet-stream",
        fail_first: int = 0,
        no_length: bool = False,
        drip_seconds: float | None = None,
    ) -> str:
        """Serve ``body`` at ``path``; return its URL.

        Parameters
        ----------
        truncate_to: int, optional
            Announce the full Content-Length but send only this many bytes, then close.
        stall_seconds: float, optional
            Send the headers, then wait this long before the body.
        fail_first: int, default 0
            Answer HTTP 503 to the first ``fail_first`` requests, then serve normally.
        no_length: bool, default False
            Send no Content-Length: the body ends when the connection closes.
        drip_seconds: float, optional
            Send the body one byte at a time, this many seconds apart.
        """
        with self._lock:
            self._routes[_path_only(path)] = _Route(
                body,
                status,
                truncate_to,
                stall_seconds,
                content_type,
                fail_first,
                no_length,
                drip_seconds,
            )
        return self.url(path)

    def add_handler(self, path_prefix: str, handler: Handler) -> str:
        """Answer every path starting with ``path_prefix`` with ``handler(path, headers)``.

        ``handler`` gets the full request path (query string included) and the request headers
        and returns ``(status, headers, body)``. Returns the URL of ``path_prefix``.
        """
        with self._lock:
            self._handlers.append(("/" + path_prefix.lstrip("/"), handler))
        return self.url(path_prefix)

    def _record(self, path: str) -> None:
        with self._lock:
            self.requests.append(path)

    def _handler_for(self, path: str) -> Handler | None:
        with self._lock:
            for prefix, handler in self._handlers:
                if path.startswith(prefix):
                    return handler
        return None

    def _route_for(self, path: str) -> tuple[_Route | None, bool]:
        """The route of ``path`` and whether this request is one of its scripted 503s."""
        with self._lock:
            route = self._routes.get(_path_only(path))
            if route is None:
                return None, False
            route.requests_seen += 1
            return route, route.requests_seen <= route.fail_first

    def _stall(self, seconds: float) -> None:
        self._closing.wait(seconds)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    loopback: LoopbackServer

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hanging up are expected
            super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _QuietServer

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        loopback = self.server.loopback
        loopback._record(self.path)
        handler = loopback._handler_for(self.path)
        if handler is not None:
            status, headers, body = handler(self.path, dict(self.headers))
            self._respond(status, headers, body)
            return
        route, scripted_failure = loopback._route_for(self.path)
        if route is None:
            self._respond(404, {"Content-Type": "text/plain"}, b"not found")
        elif scripted_failure:
            self._respond(503, {"Content-Type": "text/plain"}, b"try again later")
        else:
            self._serve(route)

    def _serve(self, route: _Route) -> None:
        self._send_headers(
            route.status,
            {"Content-Type": route.content_type},
            None if route.no_length else len(route.body),
        )
        if route.stall_seconds:
            self.server.loopback._stall(route.stall_seconds)
        sent = route.body if route.truncate_to is None else route.body[: route.truncate_to]
        if route.drip_seconds:
            for k in range(len(sent)):
                if self.server.loopback._closing.is_set():
                    break
                self.wfile.write(sent[k : k + 1])
                self.wfile.flush()
                self.server.loopback._stall(route.drip_seconds)
        else:
            self.wfile.write(sent)
        self.close_connection = True

    def _respond(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self._send_headers(status, headers, len(body))
        self.wfile.write(body)

    def _send_headers(self, status: int, headers: dict[str, str], length: int | None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()


def _path_only(path: str) -> str:
    return "/" + urlsplit(path).path.lstrip("/")
