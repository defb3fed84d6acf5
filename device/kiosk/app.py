"""The kiosk's web app (Starlette): server-rendered pages and forms over `station.Kiosk`, and the preview stream.

Safe defaults in the manner of Jupyter Server:
- every page but sign-in needs a signed-in operator session (the device passcode, checked by the chip);
- the session cookie is HttpOnly and SameSite=Strict; every POST carries the session's CSRF token
  (the sign-in form too: anonymous visitors get a session and a token first);
- a restrictive Content-Security-Policy: scripts, styles and images from this origin only, no inline
  script, nothing framed; the Host header must name the address the kiosk was bound to (DNS rebinding);
- pages and JSON carry names, sizes, generations and fingerprints, never an embedding, a key or a record;
  the preview is JPEG in memory, streamed to the operator who started the enrolment and no one else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latticelock.device.errors import DeviceError, KioskBusyError, SignInRequiredError
from latticelock.device.kiosk.enrolment import RUNNING, EnrolmentJob
from latticelock.device.kiosk.operators import OperatorSession, Sessions, csrf_ok
from latticelock.device.kiosk.station import Kiosk

HERE = Path(__file__).resolve().parent
COOKIE = "latticelock_kiosk"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Pages hold CSRF tokens and user names; nothing of the kiosk belongs in a cache.
    "Cache-Control": "no-store",
}
# The kiosk's forms have at most four short fields; anything bigger is not from its pages.
MAX_FIELDS = 8
MAX_FIELD_BYTES = 4096
PREVIEW_BOUNDARY = "frame"

Handler = Callable[[Request, OperatorSession], Awaitable[Response]]


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response (a plain ASGI wrapper, so the preview stream is untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class KioskApp:
    """The routes of the operator's pages; each one a thin call into the kiosk."""

    def __init__(self, kiosk: Kiosk, sessions: Sessions) -> None:
        self.kiosk = kiosk
        self.sessions = sessions
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))

    # --- plumbing -------------------------------------------------------------------------------

    def routes(self) -> list:
        page, signed_in, posted = self._page, self._signed_in, self._posted
        return [
            Route("/", page(signed_in(self.dashboard))),
            Route("/signin", page(self.signin_form)),
            Route("/signin", page(posted(self.signin)), methods=["POST"]),
            Route("/passcode", page(posted(self.first_passcode)), methods=["POST"]),
            Route("/signout", page(posted(self.signout)), methods=["POST"]),
            Route("/enrol", page(signed_in(self.enrol_form))),
            Route("/enrol", page(posted(signed_in(self.enrol))), methods=["POST"]),
            Route("/enrol/job", page(signed_in(self.job_page))),
            Route("/enrol/status", page(signed_in(self.job_status))),
            Route("/enrol/preview.mjpg", page(signed_in(self.job_preview))),
            Route("/users/delete", page(signed_in(self.delete_form))),
            Route("/users/delete", page(posted(signed_in(self.delete))), methods=["POST"]),
            Route("/unlock", page(signed_in(self.unlock_form))),
            Route("/unlock", page(posted(signed_in(self.unlock))), methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ]

    def _page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Find or start the visitor's session, run the handler, and hand the browser the session's current id."""

        async def endpoint(request: Request) -> Response:
            sent = request.cookies.get(COOKIE)
            session = self.sessions.get(sent) or self.sessions.new()
            request.state.session = session
            response = await handler(request, session)
            current = request.state.session
            if current.id != sent:
                response.set_cookie(COOKIE, current.id, httponly=True, samesite="strict", path="/")
            return response

        return endpoint

    def _signed_in(self, handler: Handler) -> Handler:
        async def endpoint(request: Request, session: OperatorSession) -> Response:
            if not session.signed_in:
                return RedirectResponse("/signin", status_code=303)
            try:
                return await handler(request, session)
            except SignInRequiredError as exc:
                return self._sign_out(request, session, str(exc))

        return endpoint

    def _posted(self, handler: Handler) -> Handler:
        """Refuse a POST without the session's CSRF token; hand the handler its form fields."""

        async def endpoint(request: Request, session: OperatorSession) -> Response:
            form = await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
            request.state.form = {key: value for key, value in form.items() if isinstance(value, str)}
            if not csrf_ok(session, request.state.form.get("csrf")):
                return self._render(request, session, "refused.html", status=403)
            return await handler(request, session)

        return endpoint

    def _render(self, request: Request, session: OperatorSession, template: str, status: int = 200,
                **context: Any) -> Response:
        current = request.state.session
        context.update(
            session=current, csrf=current.csrf, messages=current.take_messages(), kiosk=self.kiosk,
            window_left=int(self.sessions.window_left(current)),
        )
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    def _sign_out(self, request: Request, session: OperatorSession, message: str) -> Response:
        self.sessions.end(session)
        fresh = self.sessions.new()
        fresh.flash("error", message)
        request.state.session = fresh
        return RedirectResponse("/signin", status_code=303)

    @staticmethod
    def _redirect(path: str) -> Response:
        return RedirectResponse(path, status_code=303)

    @staticmethod
    def _index(value: str | None) -> int:
        try:
            return int(value or "")
        except ValueError:
            return -1

    async def device_error(self, request: Request, exc: Exception) -> Response:
        """A device error no page expected (a damaged store, say): its one line, on a page, never a traceback."""
        session = getattr(request.state, "session", None) or self.sessions.new()
        request.state.session = session
        return self._render(request, session, "problem.html", status=500, error=str(exc))

    # --- sign-in --------------------------------------------------------------------------------

    async def signin_form(self, request: Request, session: OperatorSession) -> Response:
        if session.signed_in:
            return self._redirect("/")
        chip = await run_in_threadpool(self.kiosk.chip_state)
        return self._render(request, session, "signin.html", chip=chip)

    async def signin(self, request: Request, session: OperatorSession) -> Response:
        try:
            await run_in_threadpool(self.kiosk.sign_in, request.state.form.get("passcode", ""))
        except DeviceError as exc:
            chip = await run_in_threadpool(self.kiosk.chip_state)
            return self._render(request, session, "signin.html", status=400, chip=chip, error=str(exc))
        request.state.session = self.sessions.sign_in(session)
        return self._redirect("/")

    async def first_passcode(self, request: Request, session: OperatorSession) -> Response:
        form = request.state.form
        try:
            await run_in_threadpool(self.kiosk.set_first_passcode, form.get("passcode", ""), form.get("again", ""))
        except DeviceError as exc:
            chip = await run_in_threadpool(self.kiosk.chip_state)
            return self._render(request, session, "signin.html", status=400, chip=chip, error=str(exc))
        signed = self.sessions.sign_in(session)
        signed.flash("ok", "device passcode set on the microcontroller (it never leaves it); you are signed in")
        request.state.session = signed
        return self._redirect("/")

    async def signout(self, request: Request, session: OperatorSession) -> Response:
        self.sessions.end(session)
        fresh = self.sessions.new()
        fresh.flash("ok", "signed out of the kiosk (the microcontroller closes its administrator window by itself "
                          "within 5 minutes of the passcode)")
        request.state.session = fresh
        return self._redirect("/signin")

    # --- dashboard ------------------------------------------------------------------------------

    async def dashboard(self, request: Request, session: OperatorSession) -> Response:
        overview = await run_in_threadpool(self.kiosk.overview)
        status = overview.chip.status
        if status and not status.get("admin"):
            raise SignInRequiredError("the microcontroller's administrator window has closed: sign in again")
        return self._render(request, session, "dashboard.html", overview=overview)

    # --- enrolment ------------------------------------------------------------------------------

    async def enrol_form(self, request: Request, session: OperatorSession) -> Response:
        name = request.query_params.get("name", "")
        return self._render(request, session, "enrol.html", name=name, replacing=bool(name) and self.kiosk.known(name))

    async def enrol(self, request: Request, session: OperatorSession) -> Response:
        form = request.state.form
        name = form.get("name", "")
        try:
            await run_in_threadpool(self.kiosk.start_enrolment, session.id, name, self._index(form.get("source")),
                                    form.get("replace") == "yes")
        except SignInRequiredError:
            raise
        except DeviceError as exc:
            status = 409 if isinstance(exc, KioskBusyError) else 400
            return self._render(request, session, "enrol.html", status=status, name=name,
                                replacing=self.kiosk.known(name) if name else False, error=str(exc))
        return self._redirect("/enrol/job")

    def _own_job(self, session: OperatorSession) -> EnrolmentJob | None:
        job = self.kiosk.job
        return job if job is not None and job.owner == session.id else None

    async def job_page(self, request: Request, session: OperatorSession) -> Response:
        job = self._own_job(session)
        if job is None:
            return self._redirect("/enrol")
        return self._render(request, session, "job.html", job=job.snapshot())

    async def job_status(self, request: Request, session: OperatorSession) -> Response:
        job = self._own_job(session)
        if job is None:
            return JSONResponse({"error": "no enrolment of yours is running"}, status_code=404)
        return JSONResponse(job.snapshot())

    async def job_preview(self, request: Request, session: OperatorSession) -> Response:
        job = self._own_job(session)
        if job is None or job.state != RUNNING:
            return Response(status_code=204)

        async def frames():
            # Each part is closed by the next boundary at once: a browser shows a part only when it has ended.
            boundary = f"\r\n--{PREVIEW_BOUNDARY}\r\n".encode()
            yield boundary
            shown = -1
            while True:
                version, jpeg, finished = await run_in_threadpool(job.preview, shown, 1.0)
                if jpeg is not None and version != shown:
                    shown = version
                    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    yield head + jpeg + boundary
                if finished:
                    return
                # Let a disconnected page's cancellation land between frames.
                await asyncio.sleep(0)

        return StreamingResponse(frames(), media_type=f"multipart/x-mixed-replace; boundary={PREVIEW_BOUNDARY}")

    # --- removal --------------------------------------------------------------------------------

    async def delete_form(self, request: Request, session: OperatorSession) -> Response:
        name = request.query_params.get("name", "")
        if not self.kiosk.known(name):
            session.flash("error", f"{name!r} is not enrolled")
            return self._redirect("/")
        return self._render(request, session, "delete.html", name=name)

    async def delete(self, request: Request, session: OperatorSession) -> Response:
        name = request.state.form.get("name", "")
        try:
            await run_in_threadpool(self.kiosk.delete, name)
        except SignInRequiredError:
            raise
        except DeviceError as exc:
            session.flash("error", str(exc))
        else:
            session.flash("ok", f"deleted {name!r} from the microcontroller and the store")
        return self._redirect("/")

    # --- test unlock ----------------------------------------------------------------------------

    async def unlock_form(self, request: Request, session: OperatorSession) -> Response:
        return self._render(request, session, "unlock.html")

    async def unlock(self, request: Request, session: OperatorSession) -> Response:
        index = self._index(request.state.form.get("source"))
        try:
            outcome = await run_in_threadpool(self.kiosk.test_unlock, index)
        except SignInRequiredError:
            raise
        except DeviceError as exc:
            status = 409 if isinstance(exc, KioskBusyError) else 400
            return self._render(request, session, "unlock.html", status=status, chosen=index, error=str(exc))
        return self._render(request, session, "unlock.html", chosen=index, outcome=outcome)


def create_app(kiosk: Kiosk, *, allowed_hosts: Sequence[str] = LOOPBACK_HOSTS, sessions: Sessions | None = None) -> Starlette:
    """The kiosk's ASGI app; `allowed_hosts` are the Host names it answers to (["*"] when bound to all interfaces)."""
    pages = KioskApp(kiosk, sessions or Sessions())
    middleware = [Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))]
    return Starlette(routes=pages.routes(), middleware=middleware, exception_handlers={DeviceError: pages.device_error})
