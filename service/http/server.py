"""The HTTP server the app runs in: what answers a request the HTTP parser itself rejects."""

from __future__ import annotations

from http import HTTPStatus

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from service.http.problems import problem_response

log = structlog.get_logger("http")


class _Protocol(RequestHandler):
    """aiohttp's connection handler, but a request its parser rejects (a control byte in a
    header, an oversized line) is answered with a problem that echoes nothing of it.

    aiohttp's own answer is text/plain carrying the parser's message, which quotes the
    offending bytes (an `Authorization` header included), and it logs a traceback at
    ERROR. Such requests are a client's fault: a WARNING line without the request's bytes.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        # Not the parser's message: it quotes the offending bytes. A bad method is mostly
        # TLS or other protocols knocking on the port: routine, so only INFO.
        level = log.info if isinstance(exc, BadHttpMethod) else log.warning
        level("http_request_rejected", status=status, error=type(exc).__name__, peer=request.remote)
        if request.writer.output_size > 0:
            # Part of an answer went out already: the connection cannot carry another.
            raise ConnectionError("response already started; cannot answer the parse error")
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Bad request"
        response = problem_response(
            status,
            slug="http-error",
            title=title,
            detail="the request is not valid HTTP/1.1 and was not read",
        )
        # The parser lost its place in the stream: nothing after this request is readable.
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections answer unparseable requests as `_Protocol` does."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
