"""The HTTP server: a Starlette application (served by uvicorn from ``monitor serve``).

Routes (JSON keys in the slice README):
* pages: ``/`` sessions, ``/sessions/<kind>/<name>``, ``/runs``, ``/runs/<run>/report.html``,
  ``/alerts``, ``/login``; live fragments under ``/fragments/...``; ``/static/app.js|app.css``;
* JSON: ``/api/sessions``, ``/api/sessions/<kind>/<name>``, ``/api/sessions/<kind>/<name>/equity``,
  ``/api/runs``, ``/api/store``, ``/api/alerts``, ``/api/readiness``, and
  ``POST /api/sessions/<kind>/<name>/events/<id>/ack``;
* ``/healthz`` (liveness), ``/readyz`` (deep check, 503 with the failing checks), ``/metrics``.

Security (:class:`Guard`): only loopback Host headers are served unless a token is set (no DNS
rebinding); with a token every route but ``/healthz`` and ``/login`` needs it as
``Authorization: Bearer <token>`` or the ``gpt_trader_monitor`` cookie set by ``/login``; POSTs
must come from this origin; every response carries a strict Content-Security-Policy (no inline
script, ``connect-src 'self'``), so nothing on a page can load from or talk to another host.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import math
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import ledgers as L
from . import pages
from .alerts import unacked_critical
from .metrics import exposition
from .runs import report_path
from .service import Monitor

COOKIE = "gpt_trader_monitor"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# backtest reports are self-contained pages with inline scripts and styles: allowed, but they may
# still load nothing from and send nothing to any other host.
REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
              "img-src data: blob:; font-src data:; connect-src 'none'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode()),
                    (b"cache-control", b"no-store"))
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
PUBLIC_PATHS = {"/healthz", "/login"}
SUMMARY_DROP = ("event_times", "critical", "last")


def clean(obj):
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


class JSON(JSONResponse):
    """JSON without NaN (``allow_nan=False`` would raise on a NaN read from a ledger)."""

    def render(self, content) -> bytes:
        try:  # the usual case: no NaN anywhere, no copy needed
            text = json.dumps(content, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
        except ValueError:
            text = json.dumps(clean(content), ensure_ascii=False, separators=(",", ":"), default=str)
        return text.encode("utf-8")


class ResponseCache:
    """ASGI middleware: GET answers (status 200) of ``/api/``, ``/fragments/`` and ``/metrics`` kept
    as the messages sent, per path and query, and sent again without running the app while
    ``token(path)`` is unchanged and for at most ``ttl`` seconds.

    ``token`` (:meth:`slices.monitor.service.Monitor.change_token` through :func:`create_app`)
    reads only file metadata, so a committed bar, status change or acknowledgement is seen by
    the next request; ``ttl`` bounds how old time-derived figures (heartbeat ages, ``time``) and
    answers without a token (runs, store) may be. Paths for which ``timeless(path)`` is true
    (the equity series: nothing in it depends on the clock) are kept until their token changes,
    whatever the ttl (their token says whether the ledger has settled, so an answer computed
    just after a commit is not kept for long). At most ``MAX_ENTRIES`` answers are kept.
    Concurrent requests for a key being computed wait for that one computation (no stampede
    when an answer expires under load). ``ttl`` 0 disables the cache. Runs on the event loop only (not thread-safe by design)."""

    PREFIXES = ("/api/", "/fragments/", "/metrics")
    MAX_ENTRIES = 500

    def __init__(self, app, ttl: float, token=None, timeless=None):
        self.app, self.ttl = app, ttl
        self.token = token or (lambda path: None)
        self.timeless = timeless or (lambda path: False)
        self._store: dict[tuple, tuple[float, object, list]] = {}
        self._pending: dict[tuple, tuple[object, asyncio.Future]] = {}

    @staticmethod
    async def _replay(messages, send):
        for message in messages:
            await send(message)

    async def __call__(self, scope, receive, send):
        if (self.ttl <= 0 or scope["type"] != "http" or scope["method"] != "GET"
                or not scope["path"].startswith(self.PREFIXES)):
            return await self.app(scope, receive, send)
        key = (scope["path"], scope.get("query_string", b""))
        token = self.token(scope["path"])
        now = time.monotonic()
        hit = self._store.get(key)
        if hit is not None and hit[1] == token and (now - hit[0] < self.ttl or self.timeless(scope["path"])):
            return await self._replay(hit[2], send)
        pending = self._pending.get(key)
        if pending is not None and pending[0] == token:
            messages = await asyncio.shield(pending[1])
            if messages is not None:
                return await self._replay(messages, send)
            return await self.app(scope, receive, send)
        done = asyncio.get_running_loop().create_future()
        self._pending[key] = (token, done)
        messages, keep = [], False

        async def capture(message):
            messages.append(message)

        try:
            await self.app(scope, receive, capture)
            keep = bool(messages) and messages[0].get("status") == 200 and not any(m.get("more_body") for m in messages[1:])
        finally:
            done.set_result(messages if keep else None)
            if self._pending.get(key, (None, None))[1] is done:
                del self._pending[key]
        if keep:
            if len(self._store) >= self.MAX_ENTRIES:
                self._store.clear()
            self._store[key] = (now, token, messages)
        await self._replay(messages, send)


def public_summary(s: dict, acked: set | None = None) -> dict:
    """A session summary for the API: the derived figures without the raw internals, plus
    ``critical_events`` (count) and ``critical_unacked`` (count, when ``acked`` is given)."""
    out = {k: v for k, v in s.items() if k not in SUMMARY_DROP}
    if "error" not in s:
        out["critical_events"] = len(s.get("critical") or [])
        if acked is not None:
            out["critical_unacked"] = len(unacked_critical([s], acked))
    return out


class Guard:
    """ASGI middleware: Host allowlist, token check, same-origin POSTs, security headers."""

    def __init__(self, app, token: str | None, hosts: set[str]):
        self.app, self.token, self.hosts = app, token, hosts

    def _authorised(self, headers: dict) -> bool:
        if not self.token:
            return True
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        for part in headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == COOKIE and hmac.compare_digest(v.encode(), self.token.encode()):
                return True
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        path = scope["path"]
        resp = None
        if self.hosts and hostname not in self.hosts:
            resp = PlainTextResponse("unknown Host header\n", status_code=400)
        elif path not in PUBLIC_PATHS and not self._authorised(headers):
            if path.startswith(("/api/", "/metrics", "/readyz", "/fragments/")):
                resp = JSONResponse({"error": "unauthorised: send the token as 'Authorization: Bearer <token>'"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            else:
                resp = RedirectResponse("/login", status_code=303)
        elif scope["method"] == "POST":
            origin = headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1] != host:
                resp = JSONResponse({"error": "cross-origin POST refused"}, status_code=403)
        if resp is not None:
            return await resp(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                hdrs = list(message.get("headers", []))
                names = {k.lower() for k, _ in hdrs}
                hdrs += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": hdrs}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def create_app(monitor: Monitor, token: str | None = None, hosts: set[str] | None = None,
               refresh: float = 2.0, evaluate_alerts: bool = False, cache_ttl: float = 0.0) -> Starlette:
    """The application over ``monitor``. ``hosts``: allowed Host names (None: any, used only when
    a token protects a non-loopback bind); ``refresh``: seconds between the pages' polls;
    ``evaluate_alerts``: run the rules every ``settings.interval`` seconds in the background and
    send alerts (``serve`` does; tests of the pages do not); ``cache_ttl``: at most how many
    seconds a GET answer of the API, fragments and metrics is reused while the ledgers and the
    monitor's database are unchanged (:class:`ResponseCache`; 0: never)."""

    def not_found(what: str):
        return JSON({"error": f"no such {what}"}, status_code=404)

    def get_session(request: Request):
        kind, name = request.path_params["kind"], request.path_params["name"]
        ref = L.find(monitor.ledgers, kind, name)
        return ref, (monitor.session(kind, name) if ref else None)

    # ------------------------------------------------------------------ health, metrics
    def healthz(request):
        return JSON({"status": "ok"})

    def readyz(request):
        ready, checks = monitor.readiness()
        return JSON({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    def metrics(request):
        return Response(exposition(monitor), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------------ JSON API
    def api_sessions(request):
        acked = monitor.alerts.acked()
        now = monitor.clock()
        return JSON({"time": now.isoformat(), "sessions": [public_summary(s, acked) for s in monitor.sessions(now)]})

    def api_session(request):
        ref, s = get_session(request)
        if s is None:
            return not_found("session")
        d = L.session_detail(ref, limit=_int(request, "limit", 50, 1, 1000))
        return JSON({"session": public_summary(s, monitor.alerts.acked()), **d})

    def api_equity(request):
        ref = L.find(monitor.ledgers, request.path_params["kind"], request.path_params["name"])
        if ref is None:
            return not_found("session")
        return JSON(L.equity_series(ref, _int(request, "max_points", 2000, 2, 100_000)))

    def api_runs(request):
        return JSON({"root": str(monitor.runs), "runs": monitor.runs_list()})

    def api_store(request):
        return JSON(monitor.store_status())

    def api_alerts(request):
        sessions = [s for s in monitor.sessions() if "error" not in s]
        return JSON({"active": monitor.alerts.active(), "history": monitor.alerts.history(_int(request, "limit", 100, 1, 5000)),
                     "critical_unacked": unacked_critical(sessions, monitor.alerts.acked())})

    def api_readiness(request):
        ready, checks = monitor.readiness()
        return JSON({"ready": ready, "checks": checks})

    async def api_ack(request):
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSON({"error": "send Content-Type: application/json"}, status_code=415)
        ref, s = await anyio.to_thread.run_sync(get_session, request)
        if s is None or "error" in s:
            return not_found("session")
        try:
            event_id = int(request.path_params["event_id"])
        except ValueError:
            return not_found("event")
        match = [c for c in s.get("critical") or [] if c["id"] == event_id]
        if not match:
            return JSON({"error": f"{ref.id} has no critical event {event_id}"}, status_code=404)
        await anyio.to_thread.run_sync(lambda: monitor.alerts.ack(ref.kind, ref.name, event_id, match[0]["time"], monitor.clock()))
        return JSON({"acknowledged": {"session": ref.id, "id": event_id, "time": match[0]["time"]}})

    # ------------------------------------------------------------------ pages
    def dashboard(request):
        return HTMLResponse(pages.dashboard(monitor.sessions(), refresh))

    def frag_sessions(request):
        return HTMLResponse(pages.sessions_fragment(monitor.sessions()))

    def session_page(request):
        ref, s = get_session(request)
        if s is None:
            return HTMLResponse(pages.page("Not found", "<h1>No such session</h1>"), status_code=404)
        return HTMLResponse(pages.session_page(s, L.session_detail(ref), refresh))

    def frag_session(request):
        ref, s = get_session(request)
        if s is None:
            return HTMLResponse("<p class=\"bad\">This session's ledger is gone.</p>", status_code=404)
        return HTMLResponse(pages.session_fragment(s, L.session_detail(ref)))

    def runs_page(request):
        return HTMLResponse(pages.runs_page(monitor.runs_list(), str(monitor.runs)))

    def run_report(request):
        p = report_path(monitor.runs, request.path_params["run"])
        if p is None:
            return HTMLResponse(pages.page("Not found", "<h1>No such report</h1>"), status_code=404)
        return FileResponse(p, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP})

    def _alerts_fragment():
        sessions = [s for s in monitor.sessions() if "error" not in s]
        return pages.alerts_fragment(monitor.alerts.active(), monitor.alerts.history(50),
                                     unacked_critical(sessions, monitor.alerts.acked()))

    def alerts_page(request):
        return HTMLResponse(pages.alerts_page(_alerts_fragment(), refresh))

    def frag_alerts(request):
        return HTMLResponse(_alerts_fragment())

    async def login(request):
        if request.method == "GET":
            return HTMLResponse(pages.login_page())
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return HTMLResponse(pages.login_page("Wrong token."), status_code=401)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp

    @asynccontextmanager
    async def lifespan(app):
        task = None
        if evaluate_alerts:
            async def loop():
                interval = max(0.2, float(monitor.rules["settings"]["interval"]))
                while True:
                    try:
                        await anyio.to_thread.run_sync(monitor.run_alerts)
                    except Exception as exc:  # keep serving; say why once per failure
                        print(f"warning: alert evaluation failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    await asyncio.sleep(interval)
            task = asyncio.create_task(loop())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()

    S = "/sessions/{kind}/{name}"
    routes = [
        Route("/", dashboard), Route(S, session_page), Route("/runs", runs_page),
        Route("/runs/{run}/report.html", run_report), Route("/alerts", alerts_page),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/fragments/sessions", frag_sessions), Route("/fragments" + S, frag_session),
        Route("/fragments/alerts", frag_alerts),
        Route("/api/sessions", api_sessions), Route("/api" + S, api_session), Route("/api" + S + "/equity", api_equity),
        Route("/api" + S + "/events/{event_id}/ack", api_ack, methods=["POST"]),
        Route("/api/runs", api_runs), Route("/api/store", api_store), Route("/api/alerts", api_alerts),
        Route("/api/readiness", api_readiness),
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)

    def change_token(path: str) -> tuple:
        """:meth:`Monitor.change_token` of the session a path names, else of every ledger."""
        parts = path.split("/")  # /api/sessions/<kind>/<name>[/equity], /fragments/sessions/<kind>/<name>
        if len(parts) >= 5 and parts[2] == "sessions":
            return monitor.change_token(parts[3], parts[4])
        return monitor.change_token()

    return Guard(ResponseCache(app, cache_ttl, change_token, timeless=lambda path: path.endswith("/equity")),
                 token, hosts or set())


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """A bounded integer query parameter (the default when absent or not an integer)."""
    try:
        return min(hi, max(lo, int(request.query_params.get(name, default))))
    except ValueError:
        return default
