"""Client tools and instructions over ``/v1/realtime``, driven by the stock ``openai`` Python SDK.

The fake LLM is a real OpenAI-wire server: a tool call comes back in the chat-completions streaming
format, and every request it got is recorded, so the tests see what Parley asked the model.
"""

from __future__ import annotations

import json

import pytest

from tests.support.fakes.openai_server import Reply
from tests.support.in_process import running_server
from tests.support.realtime import TOKEN, next_of, realtime_session, typed_turn

pytestmark = pytest.mark.slow

LIGHTS = {
    "type": "function",
    "name": "set_lights",
    "description": "Switch the lights of a room in the user's home on or off.",
    "parameters": {"type": "object", "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}},
                   "required": ["room", "on"]},
}


def parley_prompt(fake_llm) -> str:
    """The first system message of the model's last request: Parley's instructions (memories come after)."""
    return next(m["content"] for m in fake_llm.requests[-1]["messages"] if m["role"] == "system")


async def test_sdk_client_tool_round_trip(make_config, embedder, speech_engines, fake_llm):
    fake_llm.push(Reply(tool_call=("set_lights", {"room": "kitchen", "on": True})),
                  Reply(text="The kitchen lights are on now."))
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await conn.session.update(session={"type": "realtime", "tools": [LIGHTS], "tool_choice": "auto"})
        updated = await next_of(conn, {"session.updated"})
        assert [t.name for t in updated.session.tools] == ["set_lights"]
        await typed_turn(conn, "please switch on the kitchen lights")
        seen: list = []
        done = await next_of(conn, {"response.done"}, seen=seen)

        # The model was offered the client's tool, in its own tool-calling format.
        offered = fake_llm.requests[-1]["tools"]
        assert [(t["function"]["name"], t["function"]["description"]) for t in offered] == \
            [("set_lights", LIGHTS["description"])]
        assert offered[0]["function"]["parameters"] == LIGHTS["parameters"]
        # The call, as the SDK expects it.
        kinds = [e.type for e in seen]
        assert kinds.index("response.output_item.added") < kinds.index("response.function_call_arguments.delta") \
            < kinds.index("response.function_call_arguments.done") < kinds.index("response.output_item.done")
        assert "response.output_audio.delta" not in kinds, "a tool call is not spoken"
        assert done.response.status == "completed"
        [call] = done.response.output
        assert call.type == "function_call" and call.name == "set_lights"
        assert json.loads(call.arguments) == {"room": "kitchen", "on": True}
        args_done = next(e for e in seen if e.type == "response.function_call_arguments.done")
        assert args_done.call_id == call.call_id and json.loads(args_done.arguments) == {"room": "kitchen", "on": True}

        # The client runs it and sends the output; its response.create continues the answer.
        await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call.call_id,
                                                  "output": json.dumps({"ok": True, "brightness": 80})})
        added = await next_of(conn, {"conversation.item.added"})
        assert added.item.type == "function_call_output"
        await conn.response.create()
        seen = []
        answer = await next_of(conn, {"response.done"}, seen=seen)
        assert answer.response.status == "completed"
        assert answer.response.output[0].content[0].transcript.strip() == "The kitchen lights are on now."
        assert any(e.type == "response.output_audio.delta" for e in seen)

        # The continuation asked the model with the user's words, its call and the client's output.
        messages = fake_llm.requests[-1]["messages"]
        roles = [m["role"] for m in messages]
        assert roles[-3:] == ["user", "assistant", "tool"]
        assert messages[-3]["content"] == "please switch on the kitchen lights"
        assert messages[-2]["tool_calls"][0]["id"] == call.call_id
        assert messages[-2]["tool_calls"][0]["function"]["name"] == "set_lights"
        assert messages[-1]["tool_call_id"] == call.call_id and '"brightness": 80' in messages[-1]["content"]

        # History keeps the exchange once, with its answer: the next turn's prompt shows it.
        await typed_turn(conn, "thanks")
        await next_of(conn, {"response.done"})
        history = [(m["role"], m["content"]) for m in fake_llm.requests[-1]["messages"] if m["role"] != "system"]
        assert history == [("user", "please switch on the kitchen lights"),
                           ("assistant", "The kitchen lights are on now."), ("user", "thanks")]


async def test_tool_output_for_an_unknown_call_is_an_error_and_the_session_goes_on(make_config, embedder,
                                                                                     speech_engines, fake_llm):
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await conn.send({"type": "session.update", "event_id": "bad-tool",
                         "session": {"type": "realtime", "tools": [{"type": "function"}]}})
        error = await next_of(conn, {"error"}, timeout=10)
        assert error.error.event_id == "bad-tool" and "name" in error.error.message
        await conn.send({"type": "conversation.item.create", "event_id": "no-call",
                         "item": {"type": "function_call_output", "call_id": "call_nope", "output": "{}"}})
        error = await next_of(conn, {"error"}, timeout=10)
        assert error.error.event_id == "no-call" and error.error.param == "item.call_id"
        await typed_turn(conn, "hello")
        done = await next_of(conn, {"response.done"})
        assert done.response.status == "completed"
        assert "tools" not in fake_llm.requests[-1], "a session without tools offers the model none"


async def test_session_and_response_instructions_reach_the_system_prompt(make_config, embedder, speech_engines,
                                                                         fake_llm):
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                           "instructions": "Talk like a ship's captain."})
        await next_of(conn, {"session.updated"})
        await typed_turn(conn, "hello")
        await next_of(conn, {"response.done"})
        assert "Talk like a ship's captain." in parley_prompt(fake_llm)
        assert parley_prompt(fake_llm).startswith("You are Parley"), "Parley's own rules stay first"

        await typed_turn(conn, "and now?", {"instructions": "Answer in one word."})
        await next_of(conn, {"response.done"})
        prompt = parley_prompt(fake_llm)
        assert "Answer in one word." in prompt and "ship's captain" not in prompt, "this response's replace them"

        await typed_turn(conn, "once more")
        await next_of(conn, {"response.done"})
        prompt = parley_prompt(fake_llm)
        assert "ship's captain" in prompt and "one word" not in prompt, "for that response only"

        # A system message item (LiveKit sends its chat context so) adds to the instructions from then on.
        await conn.conversation.item.create(item={"type": "message", "role": "system",
                                                  "content": [{"type": "input_text", "text": "Call the user Sam."}]})
        added = await next_of(conn, {"conversation.item.added"})
        assert added.item.role == "system"
        await typed_turn(conn, "hi again")
        await next_of(conn, {"response.done"})
        prompt = parley_prompt(fake_llm)
        assert "ship's captain" in prompt and "Call the user Sam." in prompt
        assert all(m["role"] != "user" or "Sam" not in m["content"] for m in fake_llm.requests[-1]["messages"])
