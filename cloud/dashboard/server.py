"""The dashboard's HTTP server: the page, its JSON and a Server-Sent Events stream.

aiohttp runs on its own event loop in a thread beside the gRPC server. Logging
in takes one of the gRPC API's tokens (any role may read) in a form and gives
an HttpOnly session cookie; the token never appears in a URL. Live updates
come from the same change feed as WatchCityState: one watcher for the whole
dashboard, fanned out to each open page, so many pages cost one subscription.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from roadsense.cloud.api.auth import AuthConfig, token_holder
from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.city.watch import ChangeFeed
from roadsense.cloud.config import DashboardConfig
from roadsense.cloud.dashboard.evidence import EvidenceStills
from roadsense.cloud.dashboard.layout import NetworkLayout, load_adjacency, network_layout
from roadsense.cloud.dashboard.views import city_summary, segment_detail, segment_state
from roadsense.cloud.domain import SegmentSnapshot
from roadsense.cloud.forecast.job import ForecastJob
from roadsense.cloud.ingest.subscriber import IngestCounters
from roadsense.cloud.store.interface import Store
from roadsense.core.errors import CommandError, RequestError, RoadSenseError
from roadsense.core.timeutil import now_ms
from roadsense.models.forecast.series import load_series
from roadsense.models.shipped import SZ_ADJACENCY, SZ_SPEEDS
from roadsense.proto.topics import is_identifier

logger = logging.getLogger(__name__)

COOKIE = "roadsense_session"
STATIC = resources.files("roadsense.cloud.dashboard") / "static"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
CITY_EVERY_S = 2.0
"""After changes, the city panel is pushed at most this often."""
FULL_EVERY_S = 10.0
"""Every segment's state (stale flags flip without a report) and the city, this often."""
KEEPALIVE_S = 15.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class CityParts:
    """What the dashboard reads from the running cloud service."""

    tracker: CityTracker
    feed: ChangeFeed
    store: Store
    ingest: IngestCounters
    forecasts: ForecastJob | None
    city: Mapping[str, SegmentConfig]
    evidence: EvidenceStills | None = None


def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def demo_adjacency() -> list[tuple[str, str]]:
    """Links between the shipped SZ-taxi roads (their ids as the replay names them)."""
    return load_adjacency(SZ_ADJACENCY, load_series(SZ_SPEEDS).segment_ids)


class DashboardServer:
    """Serves the dashboard until stop()."""

    def __init__(self, config: DashboardConfig, auth: AuthConfig, parts: CityParts) -> None:
        self._config = config
        self._auth = auth
        self._parts = parts
        self._sessions: dict[str, float] = {}
        self._clients: set[asyncio.Queue[str | None]] = set()
        self._adjacency = demo_adjacency()
        self._layout: tuple[frozenset[str], NetworkLayout] | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None
        self._rate: tuple[float, int] = (time.monotonic(), 0)
        self._rate_per_s = 0.0
        self._dirty = False
        self._pusher: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)
        self._pump = threading.Thread(target=self._pump_feed, name="dashboard-feed", daemon=True)
        self.port = 0
        if not auth.tokens:
            logger.warning("dashboard is open to anyone who can reach it: no tokens configured")

    # Lifecycle ------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where the page is."""
        return f"http://{self._config.host}:{self.port}/"

    def start(self) -> None:
        """Bind the port and serve in the background."""
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RoadSenseError(
                f"cannot serve the dashboard on {self._config.host}:{self._config.port}: "
                f"{self._error}"
            ) from self._error
        self._pump.start()
        logger.info("dashboard on %s", self.url)

    def stop(self) -> None:
        """Close every event stream and the server."""
        self._stopping.set()
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._pump.join(timeout=5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._startup())
        except OSError as err:
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _startup(self) -> None:
        app = web.Application(middlewares=[self._require_session])
        app.add_routes(
            [
                web.get("/", self._index),
                web.get("/login", self._login_page),
                web.post("/login", self._login),
                web.post("/logout", self._logout),
                web.get("/static/{name}", self._asset),
                web.get("/api/network", self._network),
                web.get("/api/city", self._city),
                web.get("/api/segments/{segment_id}", self._segment),
                web.get("/api/evidence/{device_id}/{camera_id}", self._evidence),
                web.get("/api/events", self._events),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.host, self._config.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._config.port
        self._pusher = self._loop.create_task(self._push_city())

    async def _shutdown(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
        for queue in list(self._clients):
            queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    # Sessions -------------------------------------------------------------

    def _has_session(self, request: web.Request) -> bool:
        if not self._auth.tokens:
            return True
        expires = self._sessions.get(request.cookies.get(COOKIE, ""))
        return expires is not None and expires > time.time()

    @web.middleware
    async def _require_session(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in ("/login", "/logout") or path.startswith("/static/"):
            return await handler(request)
        if self._has_session(request):
            return await handler(request)
        if path.startswith("/api/"):
            return web.json_response({"error": "log in first"}, status=401)
        raise web.HTTPSeeOther("/login")

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_static("login.html"), content_type="text/html")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = form.get("token")
        holder = token_holder(self._auth, token) if isinstance(token, str) and token else None
        if holder is None and self._auth.tokens:
            page = _static("login.html").replace(
                b"<!--error-->", b'<p class="error" role="alert">Unknown token.</p>'
            )
            return web.Response(body=page, content_type="text/html", status=401)
        session = secrets.token_urlsafe(32)
        self._sessions[session] = time.time() + self._config.session_hours * 3600
        if holder is not None:
            logger.info("dashboard login by %s (role %s)", holder.name, holder.role)
        response = _see_other("/")
        response.set_cookie(
            COOKIE,
            session,
            httponly=True,
            samesite="Strict",
            max_age=int(self._config.session_hours * 3600),
        )
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = _see_other("/login")
        response.del_cookie(COOKIE)
        return response

    # Pages and JSON -------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_static("index.html"), content_type="text/html")

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        if "/" in name or suffix not in CONTENT_TYPES or not (STATIC / name).is_file():
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=CONTENT_TYPES[suffix])

    def _history_from(self, now: int) -> int:
        return now - int(self._config.history_hours * 3_600_000)

    def _city_json(self) -> dict[str, Any]:
        now = now_ms()
        return city_summary(
            tracker=self._parts.tracker,
            store=self._parts.store,
            city=self._parts.city,
            ingest=self._parts.ingest.stats(),
            ingest_rate_per_s=self._rate_per_s,
            now=now,
            history_from_ms=self._history_from(now),
        )

    def _network_json(self) -> dict[str, Any]:
        now = now_ms()
        states = self._parts.tracker.snapshot(now)
        forecast_ids: set[str] = set()
        if self._parts.forecasts is not None:
            model = self._parts.forecasts.model()
            forecast_ids = set(self._parts.forecasts.latest())
            forecast_ids |= set(model.card.segment_ids) if model else set()
        ids = frozenset({s.segment_id for s in states} | set(self._parts.city) | forecast_ids)
        if self._layout is None or self._layout[0] != ids:
            self._layout = (ids, network_layout(ids, self._parts.city, self._adjacency))
        layout = self._layout[1]
        by_id = {s.segment_id: s for s in states}
        segments = []
        for segment_id in sorted(ids):
            config = self._parts.city.get(segment_id)
            state = by_id.get(segment_id)
            speeds = self._parts.store.observations(segment_id, self._history_from(now), now)
            segments.append(
                {
                    "id": segment_id,
                    "name": config.name if config else segment_id,
                    "shape": layout.shapes.get(segment_id, []),
                    "geographic": bool(config and config.coordinates),
                    "state": segment_state(state) if state else None,
                    "speed": speeds[-1].value if speeds else None,
                    "speed_ms": speeds[-1].time_ms if speeds else None,
                }
            )
        return {"segments": segments, "links": layout.links, "as_of_ms": now}

    async def _network(self, request: web.Request) -> web.StreamResponse:
        body = await asyncio.get_running_loop().run_in_executor(None, self._network_json)
        return web.json_response(body)

    async def _city(self, request: web.Request) -> web.StreamResponse:
        body = await asyncio.get_running_loop().run_in_executor(None, self._city_json)
        return web.json_response(body)

    async def _segment(self, request: web.Request) -> web.StreamResponse:
        segment_id = request.match_info["segment_id"]
        now = now_ms()
        body = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: segment_detail(
                segment_id,
                tracker=self._parts.tracker,
                store=self._parts.store,
                city=self._parts.city,
                forecasts=self._parts.forecasts,
                now=now,
                history_from_ms=self._history_from(now),
            ),
        )
        if body is None:
            return web.json_response({"error": f"no segment {segment_id!r}"}, status=404)
        body["evidence"] = self._parts.evidence is not None
        return web.json_response(body)

    async def _evidence(self, request: web.Request) -> web.StreamResponse:
        """A camera's still now, its vehicles boxed (PNG); JSON naming the problem else."""
        stills = self._parts.evidence
        if stills is None:
            return web.json_response(
                {"error": "evidence stills are off on this cloud ([dashboard] evidence, with "
                 "[classify] detector)"},
                status=404,
            )  # fmt: skip
        device_id, camera_id = request.match_info["device_id"], request.match_info["camera_id"]
        for name, value in (("device", device_id), ("camera", camera_id)):
            if not is_identifier(value):
                return web.json_response({"error": f"not a {name} id: {value!r}"}, status=400)
        try:
            evidence = await asyncio.get_running_loop().run_in_executor(
                None, stills.take, device_id, camera_id
            )
        except (CommandError, RequestError) as err:
            return web.json_response({"error": str(err)}, status=502)
        return web.Response(
            body=evidence.png,
            content_type="image/png",
            headers={
                "Cache-Control": "no-store",
                "X-Vehicles": str(evidence.vehicles),
                "X-Occupancy": f"{evidence.occupancy:.4f}",
                "X-Detector-Version": evidence.detector_version,
                "X-Capture-Time-Ms": str(evidence.capture_time_ms),
                "X-Blurred-Regions": str(evidence.blurred_regions),
            },
        )

    # Live -----------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=10_000)
        self._clients.add(queue)
        try:
            await response.write(b"retry: 2000\n\n")
            while not self._stopping.is_set():
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    message = ": keepalive\n\n"
                if message is None:
                    break
                await response.write(message.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(queue)
        return response

    def _broadcast(self, event: str, data: Any) -> None:
        message = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        for queue in list(self._clients):
            if queue.full():  # a page that stopped reading: drop it, it reconnects
                self._clients.discard(queue)
                continue
            queue.put_nowait(message)

    def _pump_feed(self) -> None:
        """Carry the change feed onto the event loop."""
        watcher = self._parts.feed.subscribe()
        try:
            while not self._stopping.is_set() and not watcher.closed:
                changed = watcher.take(0.5)
                if changed:
                    self._loop.call_soon_threadsafe(self._segments_changed, changed)
        except RuntimeError:  # the loop closed under us at shutdown
            pass
        finally:
            self._parts.feed.unsubscribe(watcher)

    def _segments_changed(self, changed: list[SegmentSnapshot]) -> None:
        now = now_ms()
        self._dirty = True
        for snapshot in changed:
            fresh = self._parts.tracker.with_staleness(snapshot, now)
            self._broadcast("segment", segment_state(fresh))

    async def _push_city(self) -> None:
        """The city panel after changes (throttled) and everything every FULL_EVERY_S."""
        last_full = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            await asyncio.sleep(CITY_EVERY_S)
            self._measure_rate()
            full = time.monotonic() - last_full >= FULL_EVERY_S
            if not (self._clients and (self._dirty or full)):
                continue
            self._dirty = False
            try:
                city = await loop.run_in_executor(None, self._city_json)
            except Exception:
                logger.exception("dashboard: city summary failed; retrying")
                continue
            self._broadcast("city", city)
            if full:
                last_full = time.monotonic()
                states = self._parts.tracker.snapshot(now_ms())
                self._broadcast("states", [segment_state(s) for s in states])

    def _measure_rate(self) -> None:
        then, count = self._rate
        now, received = time.monotonic(), self._parts.ingest.stats().received
        if now - then >= 10.0:
            self._rate_per_s = (received - count) / (now - then)
            self._rate = (now, received)
