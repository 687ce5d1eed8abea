"""Plain HTTP on the WebSocket port: health, the memory API, and the web client's files.

websockets hands every request to :meth:`HttpRoutes.process_request` first; we
answer HTTP ones here and let ``/ws`` upgrades through.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import asdict, is_dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from agent.ids import InvalidIdError, validate_user_id
from agent.text_safety import replace_lone_surrogates

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"


def token_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time token check; no token configured means open access.

    ``surrogatepass``: a token decoded from JSON may hold a lone surrogate, which plain UTF-8
    cannot encode; it must be refused like any other wrong token, not raise.
    """
    if not expected:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


def split_target(target: str) -> tuple[str, str]:
    """A request target (``/path?query``) as its path and query strings.

    Not ``urlsplit``: it reads ``//[`` as the start of an IPv6 host and raises ``ValueError``
    (found by the HTTP route fuzz), and a request target is a path, never a URL with a host.
    """
    path, _, query = target.partition("?")
    return path.partition("#")[0], query.partition("#")[0]


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if any."""
    value = headers.get("Authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def _json_default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):  # an instance, not a dataclass itself
        return asdict(value)
    return str(value)


def json_response(status: int, payload: Any) -> Response:
    """A JSON HTTP response."""
    body = replace_lone_surrogates(json.dumps(payload, ensure_ascii=False, default=_json_default)).encode()
    headers = Headers([("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store")])
    return Response(status, HTTPStatus(status).phrase, headers, body)


def error_response(status: int, code: str, message: str) -> Response:
    """A JSON error body: ``{"error": {"code", "message"}}``."""
    return json_response(status, {"error": {"code": code, "message": message}})


def memory_json(record: Any) -> dict[str, Any]:
    """A memory record as the API shows it."""
    return {
        "id": record.id, "text": record.text, "kind": record.kind, "created_at": record.created_at,
        "score": getattr(record, "score", None), "metadata": record.metadata,
    }


class HttpRoutes:
    """Answers HTTP requests; returns None for WebSocket upgrades on ``/ws``."""

    def __init__(self, memory: Any, auth_token: str | None,
                 extra_routes: dict[str, Callable[[bool], Awaitable[Response]]] | None = None,
                 web_root: Path = WEB_ROOT) -> None:
        self._memory = memory
        self._auth_token = auth_token
        self._extra_routes = dict(extra_routes or {})
        """Path -> route told whether the caller holds the token: probes and metrics (speech/transport/probes.py)."""
        self._web_root = web_root.resolve()

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer an HTTP request (memory API, probes, metrics, the web client), or None to let ``/ws`` upgrade."""
        raw_path, raw_query = split_target(request.path)
        query = {k: v[-1] for k, v in parse_qs(raw_query).items()}
        path = unquote(raw_path)
        if path == "/ws":
            if request.headers.get("Upgrade", "").lower() != "websocket":
                return error_response(426, "upgrade_required", "connect with a WebSocket client")
            given = bearer_token(request.headers) or query.get("token")
            if given is not None and not token_matches(self._auth_token, given):
                return error_response(401, "unauthorized", "invalid token")
            return None  # the token may also come in session.start
        if path == "/v1/realtime":  # OpenAI Realtime API (speech/transport/realtime): the SDKs send a Bearer key
            if request.headers.get("Upgrade", "").lower() != "websocket":
                return error_response(426, "upgrade_required", "connect with a WebSocket client")
            if not token_matches(self._auth_token, bearer_token(request.headers) or query.get("token")):
                return error_response(401, "invalid_api_key", "missing or invalid API key (--auth_token)")
            return None
        if path in self._extra_routes:
            authorized = token_matches(self._auth_token, bearer_token(request.headers) or query.get("token"))
            return await self._extra_routes[path](authorized)
        if path.startswith("/api/"):
            if not token_matches(self._auth_token, bearer_token(request.headers) or query.get("token")):
                return error_response(401, "unauthorized", "missing or invalid token")
            return await self._memory_api(request.method, path, query)
        if request.method != "GET":
            return error_response(405, "method_not_allowed", f"{request.method} is not allowed here")
        return self._static(path)

    async def _memory_api(self, method: str, path: str, query: dict[str, str]) -> Response:
        try:
            user_id = validate_user_id(query.get("user_id", ""))
        except InvalidIdError as exc:
            return error_response(400, "invalid_user_id", str(exc))
        try:
            if path == "/api/memory" and method == "GET":
                if query.get("q"):
                    k = _int(query.get("k"), 10, 1, 100)
                    records = await asyncio.to_thread(self._memory.search, user_id, query["q"], k)
                else:
                    limit, offset = _int(query.get("limit"), 50, 1, 500), _int(query.get("offset"), 0, 0, 10**9)
                    records = await asyncio.to_thread(self._memory.list, user_id, limit, offset)
                return json_response(200, {"user_id": user_id, "items": [memory_json(r) for r in records]})
            if path.startswith("/api/memory/") and method == "DELETE":
                memory_id = path.removeprefix("/api/memory/")
                await asyncio.to_thread(self._memory.delete, user_id, memory_id)
                return json_response(200, {"deleted": memory_id})
            if path == "/api/memory/stats" and method == "GET":
                return json_response(200, await asyncio.to_thread(self._memory.stats, user_id))
        except KeyError:
            return error_response(404, "not_found", "no such memory for this user")
        except ValueError as exc:
            return error_response(400, "bad_request", str(exc))
        return error_response(404, "not_found", f"no route for {method} {path}")

    def _static(self, path: str) -> Response:
        relative = "index.html" if path in ("", "/") else path.lstrip("/")
        try:
            target = (self._web_root / relative).resolve()
            found = target.is_relative_to(self._web_root) and target.is_file()
        except (ValueError, OSError):  # e.g. a NUL byte (/%00) or a name too long for the file system
            found = False
        if not found:
            return error_response(404, "not_found", "not found")
        body = target.read_bytes()
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache")])
        return Response(200, "OK", headers, body)


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value))) if value is not None else default
    except ValueError:
        raise ValueError(f"not a whole number: {value!r}") from None
