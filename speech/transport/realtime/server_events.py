"""Server events of the OpenAI Realtime API (GA names), as the SDKs parse them.

Plain dicts with the documented fields: each builder is one event, with an ``event_id``. Parley's
own extras go under the ``parley.`` prefix, which the SDKs pass through or ignore.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any


def new_id(prefix: str) -> str:
    """An id in the Realtime API's style (``event_...``, ``item_...``, ``resp_...``)."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def server_event(kind: str, **fields: Any) -> dict[str, Any]:
    """One server event."""
    return {"type": kind, "event_id": new_id("event"), **fields}


def error(code: str, message: str, param: str | None = None, event_id: str | None = None,
          kind: str = "invalid_request_error") -> dict[str, Any]:
    """``error``: the client event that caused it is named by ``event_id`` when it had one."""
    return server_event("error", error={"type": kind, "code": code, "message": message, "param": param,
                                        "event_id": event_id})


def user_item(item_id: str, text: str | None = None, audio: bool = False) -> dict[str, Any]:
    """A user message item: typed (``input_text``) or spoken (``input_audio``, transcript once known)."""
    part = ({"type": "input_audio", "transcript": text} if audio else {"type": "input_text", "text": text or ""})
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
            "content": [part]}


def assistant_item(item_id: str, status: str, part: dict[str, Any] | None = None) -> dict[str, Any]:
    """The assistant message item of a response.

    An item's content says ``output_audio``/``output_text`` where the content-part events say ``audio``/``text``.
    """
    content = [{**part, "type": f"output_{part['type']}"}] if part is not None else []
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": status,
            "content": content}


def content_part(audio: bool, text: str = "") -> dict[str, Any]:
    """The one content part of a reply: audio with its transcript, or text."""
    return {"type": "audio", "transcript": text} if audio else {"type": "text", "text": text}


def response(response_id: str, status: str, output: list[dict[str, Any]], modalities: Sequence[str],
             details: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``realtime.response`` object."""
    return {"id": response_id, "object": "realtime.response", "status": status, "status_details": details,
            "output": output, "output_modalities": list(modalities), "conversation_id": None, "metadata": metadata,
            "usage": None}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    """A function call item: the model asks the client to run its tool ``name``."""
    return {"id": item_id, "object": "realtime.item", "type": "function_call", "status": status,
            "call_id": call_id, "name": name, "arguments": arguments}


def function_call_output_item(item_id: str, call_id: str, output: str) -> dict[str, Any]:
    """The client's output for a function call, as the conversation holds it."""
    return {"id": item_id, "object": "realtime.item", "type": "function_call_output", "status": "completed",
            "call_id": call_id, "output": output}
