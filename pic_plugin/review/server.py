"""The review page's local web server (``pic review``): loopback only, one secret per run, no other origins.

Security model (a page in the user's browser is the only intended client; every other local program, web page
or DNS-rebinding attacker must get nothing):

* bound to 127.0.0.1 (never 0.0.0.0), on a random free port unless one is asked for;
* every URL starts with ``/t/<token>/`` (``secrets.token_urlsafe``, compared in constant time); API calls also
  carry the token in the ``X-Pic-Token`` header, which a cross-origin page cannot send without a CORS preflight
  (and the server answers no preflight);
* the ``Host`` header must be ``127.0.0.1:<port>`` or ``localhost:<port>`` (DNS rebinding);
* a POST needs ``Origin`` equal to this server's origin and ``Content-Type: application/json``, so a form or a
  ``no-cors`` fetch from another site cannot write;
* photos are served by catalog id, only for the photos of this review (``ReviewSession.image_file``); no
  request path ever becomes a file path. The 100% view (``img/<id>/full``) decodes within pic's decode memory
  budget, one photo at a time (``imaging/fullview.py``). Page assets come from a fixed table;
* a strict Content-Security-Policy (only this origin, no inline script), ``nosniff``, no referrer, no framing.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pic_plugin.core import jsontext
from pic_plugin.core.errors import PicError
from pic_plugin.imaging import fullview
from pic_plugin.imaging.fullview import FullViewCache
from pic_plugin.imaging.thumbnails import GRID_SIZE, PREVIEW_SIZE, ThumbnailCache
from pic_plugin.review.session import ReviewError, ReviewSession

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
TOKEN_HEADER = "X-Pic-Token"
MAX_BODY = 64 * 1024

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

#: The page's files (``pic_plugin/review/web``): name in the URL -> (file, content type). Nothing else is served.
ASSETS = {
    "review.js": ("review.js", "text/javascript; charset=utf-8"),
    "review.css": ("review.css", "text/css; charset=utf-8"),
    "icon.svg": ("icon.svg", "image/svg+xml"),
}
IMAGE_SIZES = {"thumb": GRID_SIZE, "preview": PREVIEW_SIZE}

_IMG_RE = re.compile(r"^img/(\d{1,12})/(thumb|preview)$")
_FULL_IMG_RE = re.compile(r"^img/(\d{1,12})/full$")
_FULL_PLAN_RE = re.compile(r"^api/photos/(\d{1,12})/full$")
_PHOTO_RE = re.compile(r"^api/photos/(\d{1,12})(?:/(accept|adjust|reject|ratio))?$")
#: The page asks for ``img/<id>/full?v=<content key>``: an edited photo gets a new URL, so a day's caching is safe.
FULL_CACHE = "private, max-age=86400"


def web_asset(name: str) -> bytes:
    return (resources.files("pic_plugin.review") / "web" / name).read_bytes()


#: What a browser that goes away (a closed tab, a reload, a cancelled image) does to its connection.
GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 resets connections of a burst (a page's thumbnails plus a reload) without a reply.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints a traceback for any error outside the handler's own try (reading the next
        request of a kept-alive connection, flushing the last answer): a browser that left is no error at all,
        anything else is one line in the log, never a traceback on the user's terminal."""
        exc = sys.exc_info()[1]
        if isinstance(exc, GONE):
            return
        log.error("review connection failed: %s: %s", type(exc).__name__, exc)


class ReviewServer:
    """Serve ``session`` on 127.0.0.1. ``start()`` runs in a background thread; ``serve_forever()`` blocks."""

    def __init__(self, session: ReviewSession, port: int = 0, thumbnails: ThumbnailCache | None = None) -> None:
        self.session = session
        self.thumbnails = thumbnails or ThumbnailCache()
        self.full_views = FullViewCache()
        self.token = secrets.token_urlsafe(24)
        self.httpd = _Server((HOST, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.review = self  # type: ignore[attr-defined]
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None
        self._page = _render_page(self.token)

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/t/{self.token}/"

    def allowed_hosts(self) -> set[str]:
        return {f"{HOST}:{self.port}", f"localhost:{self.port}"}

    def start(self) -> ReviewServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="pic-review", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _render_page(token: str) -> bytes:
    # The token only contains URL-safe base64 characters, so it needs no HTML escaping.
    html = web_asset("review.html").decode("utf-8")
    return html.replace("{{TOKEN}}", token).encode("utf-8")


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    server_version = "pic-review"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    @property
    def review(self) -> ReviewServer:
        return self.server.review  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s " + format, self.address_string(), *args)  # URLs hold the token: never on stderr

    # --- dispatch ---

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_OPTIONS(self) -> None:  # noqa: N802 - no CORS preflight is ever granted
        self._handle("OPTIONS")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        try:
            self._check_host()
            route = self._route()
            if method == "OPTIONS" or method not in ("GET", "HEAD", "POST"):
                raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
            if route.startswith("api/"):
                self._check_api_token()
                if method == "HEAD":
                    raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
                if method == "POST":
                    self._check_write()
                    self._api_post(route, self._json_body())
                else:
                    self._api_get(route)
            elif method == "POST":
                raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
            else:
                self._get(route, head=method == "HEAD")
        except _Redirect as exc:
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", exc.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except _Refused as exc:
            self._error(exc.status, exc.message)
        except ReviewError as exc:
            self._error(HTTPStatus(exc.status), str(exc))
        except PicError as exc:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
        except GONE:
            self.close_connection = True  # the browser went away: nobody to answer
        except Exception:  # never a traceback (with paths) to the client
            log.exception("review request failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the terminal)")

    # --- checks ---

    def _check_host(self) -> None:
        if self.headers.get("Host", "") not in self.review.allowed_hosts():
            raise _Refused(HTTPStatus.FORBIDDEN, "unexpected Host header")

    def _route(self) -> str:
        """The path after ``/t/<token>/``; refuses anything without the right token."""
        if not self.path.startswith("/"):  # absolute-form targets name another host: not for us
            raise _Refused(HTTPStatus.FORBIDDEN, "forbidden")
        path = urlsplit(self.path).path
        parts = path.split("/", 3)  # '', 't', token, rest
        if len(parts) < 3 or parts[0] != "" or parts[1] != "t" or not _same(parts[2], self.review.token):
            raise _Refused(HTTPStatus.FORBIDDEN, "forbidden")
        if len(parts) == 3:
            raise _Redirect(f"/t/{self.review.token}/")
        return parts[3]

    def _check_api_token(self) -> None:
        if not _same(self.headers.get(TOKEN_HEADER, ""), self.review.token):
            raise _Refused(HTTPStatus.FORBIDDEN, "forbidden")

    def _check_write(self) -> None:
        origin = self.headers.get("Origin")
        expected = {f"http://{h}" for h in self.review.allowed_hosts()}
        if origin is None or origin not in expected or origin != f"http://{self.headers.get('Host')}":
            raise _Refused(HTTPStatus.FORBIDDEN, "cross-origin write refused")
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise _Refused(HTTPStatus.FORBIDDEN, "cross-origin write refused")
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "JSON only")

    def _json_body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting deeper than Python's stack
            raise _Refused(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
        if not isinstance(body, dict):
            raise _Refused(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return body

    # --- routes ---

    def _get(self, route: str, head: bool) -> None:
        if route == "":
            self._send(HTTPStatus.OK, self.review._page, "text/html; charset=utf-8", head=head)
            return
        if route.startswith("static/") and route[7:] in ASSETS:
            name, ctype = ASSETS[route[7:]]
            self._send(HTTPStatus.OK, web_asset(name), ctype, head=head)
            return
        m = _IMG_RE.match(route)
        if m:
            image, key = self.review.session.image_file(int(m.group(1)))
            thumb = self.review.thumbnails.get(image, key, IMAGE_SIZES[m.group(2)])
            self._send(HTTPStatus.OK, Path(thumb).read_bytes(), "image/jpeg", head=head,
                       cache="private, max-age=86400")
            return
        m = _FULL_IMG_RE.match(route)
        if m:
            # The 100% view: by id, only for this review's photos; over pic's decode budget a JSON error (422).
            image, key = self.review.session.image_file(int(m.group(1)))
            data, _ = self.review.full_views.get(image, key)
            self._send(HTTPStatus.OK, data, "image/jpeg", head=head, cache=FULL_CACHE)
            return
        raise _Refused(HTTPStatus.NOT_FOUND, "not found")

    def _api_get(self, route: str) -> None:
        session = self.review.session
        query = parse_qs(urlsplit(self.path).query)
        if route == "api/state":
            self._json(session.state())
            return
        if route == "api/photos":
            self._json(session.page(_int(query, "page", 0), _int(query, "size", 60)))
            return
        m = _PHOTO_RE.match(route)
        if m and m.group(2) is None:
            self._json(session.photo(int(m.group(1))))
            return
        m = _FULL_PLAN_RE.match(route)
        if m:
            # What img/<id>/full will be (headers only): the page shows a reduction's note or a refusal's message.
            image, _ = session.image_file(int(m.group(1)))
            self._json(fullview.plan(image).to_json())
            return
        raise _Refused(HTTPStatus.NOT_FOUND, "not found")

    def _api_post(self, route: str, body: dict[str, Any]) -> None:
        session = self.review.session
        if route == "api/undo":
            self._json(session.undo())
            return
        m = _PHOTO_RE.match(route)
        if not m or m.group(2) is None:
            raise _Refused(HTTPStatus.NOT_FOUND, "not found")
        image_id, action = int(m.group(1)), m.group(2)
        replace = body.get("replace") is True
        if action == "accept":
            index = body.get("index", 0)
            if not isinstance(index, int) or isinstance(index, bool):
                raise _Refused(HTTPStatus.BAD_REQUEST, "index must be an integer")
            self._json(session.accept(image_id, index, replace=replace))
        elif action == "adjust":
            crop = body.get("crop")
            if not isinstance(crop, list) or len(crop) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in crop
            ):
                raise _Refused(HTTPStatus.BAD_REQUEST, "crop must be [left, top, right, bottom]")
            self._json(session.adjust(image_id, crop, replace=replace))
        elif action == "reject":
            self._json(session.reject(image_id))
        else:
            ratio = body.get("ratio")
            if not isinstance(ratio, str) or len(ratio) > 20:
                raise _Refused(HTTPStatus.BAD_REQUEST, "ratio must be a string such as 4:5")
            self._json(session.set_ratio(image_id, ratio))

    # --- responses ---

    def _json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = jsontext.dumps(data, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self.close_connection = True  # an unread request body must not be taken for the next request
        self._json({"error": message}, status)

    def _send(self, status: HTTPStatus, body: bytes, ctype: str, head: bool = False, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)


class _Redirect(_Refused):
    def __init__(self, location: str) -> None:
        super().__init__(HTTPStatus.FOUND, "moved")
        self.location = location


def _same(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    try:
        return int(query.get(name, [str(default)])[0])
    except ValueError:
        raise _Refused(HTTPStatus.BAD_REQUEST, f"{name} must be an integer") from None
