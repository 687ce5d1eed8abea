"""A fake OpenAI-compatible chat server: SSE streaming, tool calls, and scripted faults.

Each request takes the next :class:`Reply` from the script queue, or, when the
queue is empty, asks ``default`` (by default an echo of the last user message).
Run it alone for benchmarks:

    python -m tests.support.fakes.openai_server --port 8000 --ttft_ms 300 --tokens_per_s 50
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.language import CJK
from tests.support.fakes.http_base import BackgroundServer, QuietHandler


@dataclass
class Reply:
    """One scripted answer."""

    text: str = ""
    tool_call: tuple[str, dict[str, Any]] | None = None
    """(function name, arguments) to answer with a tool call instead of text."""
    status: int = 200
    """Non-200 answers with an OpenAI-style error body."""
    ttft_s: float = 0.0
    """Delay before the first chunk."""
    token_interval_s: float = 0.0
    """Delay between chunks."""
    cut_after: int | None = None
    """Close the connection after this many content chunks (a stream cut mid-reply)."""
    malformed: bool = False
    """Send a chunk that is not JSON."""
    hang_s: float = 0.0
    """Wait this long before answering at all (for timeouts)."""


def tokens_of(text: str) -> list[str]:
    """Split text into small pieces the way a tokenizer roughly would (words, or CJK characters)."""
    pieces: list[str] = []
    word = ""
    for ch in text:
        if CJK.match(ch):
            if word:
                pieces.append(word)
                word = ""
            pieces.append(ch)
        elif ch == " " and word:
            pieces.append(word)
            word = " "
        else:
            word += ch
    if word:
        pieces.append(word)
    return pieces


def echo(request: dict[str, Any]) -> Reply:
    """Default answer: repeat the last user message."""
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    last = users[-1]["content"] if users else ""
    return Reply(text=f"You said: {last}")


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self.send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        else:
            self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        fake: FakeOpenAI = self.server.fake  # type: ignore[attr-defined]
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": "not found"}})
            return
        request = self.read_json()
        reply = fake.next_reply(request, self.headers.get("Authorization", ""))
        if reply.hang_s:
            time.sleep(reply.hang_s)
        if reply.status != 200:
            self.send_json(reply.status, {"error": {"message": f"scripted {reply.status}", "type": "fake"}})
            return
        if request.get("stream"):
            self._stream(request, reply)
        else:
            self._complete(request, reply)

    def _complete(self, request: dict[str, Any], reply: Reply) -> None:
        time.sleep(reply.ttft_s)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_call:
            name, args = reply.tool_call
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}
        self.send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if reply.tool_call else "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _chunk(self, request: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> str:
        return json.dumps({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })

    def _stream(self, request: dict[str, Any], reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        time.sleep(reply.ttft_s)
        try:
            self._event(self._chunk(request, {"role": "assistant", "content": ""}))
            if reply.tool_call:
                name, args = reply.tool_call
                self._event(self._chunk(request, {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                                  "function": {"name": name, "arguments": ""}}]}))
                self._event(self._chunk(request, {"tool_calls": [{"index": 0,
                                                                  "function": {"arguments": json.dumps(args)}}]}))
                self._event(self._chunk(request, {}, "tool_calls"))
            else:
                for i, token in enumerate(tokens_of(reply.text)):
                    if reply.cut_after is not None and i >= reply.cut_after:
                        return  # connection closes without [DONE]
                    if i:
                        time.sleep(reply.token_interval_s)
                    if reply.malformed and i == 1:
                        self._event("{not json")
                    self._event(self._chunk(request, {"content": token}))
                self._event(self._chunk(request, {}, "stop"))
            self._event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            fake: FakeOpenAI = self.server.fake  # type: ignore[attr-defined]
            fake.disconnects += 1  # the client cancelled the stream


class FakeOpenAI(BackgroundServer):
    """The fake server, with a script of replies and a record of every request."""

    def __init__(self, default: Callable[[dict[str, Any]], Reply] = echo, port: int = 0) -> None:
        super().__init__(_Handler, port)
        self.default = default
        self.script: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.disconnects = 0
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """What to pass as ``--lm_model_url``."""
        return f"{self.url}/v1"

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self.script.extend(replies)

    def next_reply(self, request: dict[str, Any], auth: str) -> Reply:
        with self._lock:
            self.requests.append(request)
            self.auth_headers.append(auth)
            return self.script.popleft() if self.script else self.default(request)

    def system_prompts(self) -> list[str]:
        """The system message of every request so far."""
        return [m["content"] for r in self.requests for m in r.get("messages", []) if m.get("role") == "system"]


def main() -> None:
    """Run a fake LLM with a fixed time to first token and token rate."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft_ms", type=float, default=0.0)
    parser.add_argument("--tokens_per_s", type=float, default=50.0)
    parser.add_argument("--text", default="Sure. Here is a short answer to your question, spoken in two sentences.")
    args = parser.parse_args()
    interval = 1.0 / args.tokens_per_s if args.tokens_per_s > 0 else 0.0
    fake = FakeOpenAI(lambda _: Reply(text=args.text, ttft_s=args.ttft_ms / 1000, token_interval_s=interval),
                      port=args.port)
    print(f"fake OpenAI server on {fake.base_url}", flush=True)
    fake.httpd.serve_forever()


if __name__ == "__main__":
    main()
