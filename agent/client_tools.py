"""What a session's client adds to its turns: its own instructions and tools (the Realtime API's).

A client (``/v1/realtime``'s ``session.update``) may give instructions and declare functions it runs
itself. They live on the session's :class:`~agent.conversation.Conversation` (``conv.client``), so
they reach this session's turns and no other's. The answering model is offered the client's tools
through its own tool-calling API (name, description, JSON schema); when it calls one, the turn
ends with :class:`ToolCall` s instead of an answer, and the client's outputs, sent back, continue
the answer on the next turn (``[user, assistant tool call, tool output]`` then the reply).
Parley's built-in tools keep their router (agent/graph/router.py): the two do not mix in one step.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

MAX_SYSTEM_ITEMS = 16

CLIENT_INSTRUCTIONS = """Instructions from the application you are running in (they come after the rules above
and do not replace them):
{instructions}"""


@dataclass(frozen=True)
class ClientTool:
    """A function the client runs: its name, what it does, and its arguments' JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def spec(self) -> dict[str, Any]:
        """The tool in the OpenAI chat-completions format (what ``bind_tools`` takes)."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    """The model asked the client to run ``name`` with ``arguments`` (JSON text)."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class PendingCalls:
    """A turn that ended in tool calls: what the user said, and the calls awaiting their outputs."""

    turn_id: str
    query: str
    calls: tuple[ToolCall, ...]
    before: tuple[AnyMessage, ...] = ()
    """The prompt's messages that led to the calls, after the history (the user's words, an earlier exchange)."""


@dataclass(frozen=True)
class ClientTurn:
    """What the client adds to one turn (taken from the session's :class:`ClientOptions` when it starts)."""

    instructions: str = ""
    tools: tuple[ClientTool, ...] = ()
    tool_choice: str | dict[str, Any] = "auto"
    exchange: tuple[AnyMessage, ...] = ()
    """A continued answer: the user's words, the model's tool calls and the client's outputs."""
    exchange_query: str = ""
    """The user's words the exchange answers (the turn's query when the client added no new text)."""

    @property
    def offers_tools(self) -> bool:
        """Whether the answering model is offered the client's tools on this turn."""
        return bool(self.tools) and self.tool_choice != "none"

    def chat_model(self, chat: BaseChatModel) -> Any:
        """The answering model, with the client's tools bound when it is offered them.

        ``Any``: ``bind_tools`` gives a ``Runnable`` whose ``astream`` yields the same chunks.
        """
        if not self.offers_tools:
            return chat
        choice = self.tool_choice
        if isinstance(choice, dict):  # {"type": "function", "name": ...}: that one tool
            choice = str(choice.get("name", "auto"))
        return chat.bind_tools([tool.spec() for tool in self.tools], tool_choice=choice)

    def system_addition(self) -> str:
        """The client's instructions as part of the system message ("" when it gave none)."""
        return CLIENT_INSTRUCTIONS.format(instructions=self.instructions.strip()) if self.instructions.strip() else ""

    def tail(self, query: str) -> list[AnyMessage]:
        """The prompt's last messages: the user's words, after the tool exchange they continue."""
        if not self.exchange:
            return [HumanMessage(query)]
        return [*self.exchange] if query == self.exchange_query else [*self.exchange, HumanMessage(query)]


@dataclass
class ClientOptions:
    """One session's client settings and its tool calls in flight. Owned by one session only."""

    instructions: str = ""
    tools: tuple[ClientTool, ...] = ()
    tool_choice: str | dict[str, Any] = "auto"
    next_instructions: str | None = None
    """Instructions for the next response only (``response.create``): they replace the session's."""
    system_items: list[str] = field(default_factory=list)
    """System messages the client added to the conversation: they follow the instructions, on every turn."""
    pending: PendingCalls | None = None
    """The last turn's tool calls, until the client's outputs are in and the answer continues."""
    outputs: dict[str, str] = field(default_factory=dict)
    """Outputs the client sent for ``pending``'s calls, by call id."""

    def take_turn(self) -> ClientTurn:
        """What the turn starting now gets; the one-shot parts (next instructions, outputs) are used up."""
        instructions = self.next_instructions if self.next_instructions is not None else self.instructions
        instructions = "\n".join(text for text in (instructions, *self.system_items) if text.strip())
        self.next_instructions = None
        exchange: tuple[AnyMessage, ...] = ()
        query = ""
        pending = self.pending
        if pending is not None and self.outputs:
            exchange = exchange_messages(pending, self.outputs)
            query = pending.query
            self.pending, self.outputs = None, {}
        return ClientTurn(instructions, self.tools, self.tool_choice, exchange, query)

    def add_system_item(self, text: str) -> None:
        """A system message from the client; the oldest go past :data:`MAX_SYSTEM_ITEMS`."""
        self.system_items = [*self.system_items, text][-MAX_SYSTEM_ITEMS:]

    def add_output(self, call_id: str, output: str) -> None:
        """The client's output for one call of :attr:`pending` (``KeyError`` for a call Parley did not make)."""
        if self.pending is None or call_id not in {c.call_id for c in self.pending.calls}:
            raise KeyError(call_id)
        self.outputs[call_id] = output

    @property
    def waiting_query(self) -> str | None:
        """The user's words whose answer waits on tool outputs now in, else None."""
        return self.pending.query if self.pending is not None and self.outputs else None


def exchange_messages(pending: PendingCalls, outputs: dict[str, str]) -> tuple[AnyMessage, ...]:
    """The user's words, the model's calls, and each output (a call without one says so)."""
    calls = [{"id": c.call_id, "name": c.name, "args": parse_arguments(c.arguments), "type": "tool_call"}
             for c in pending.calls]
    results = [ToolMessage(outputs.get(c.call_id, "(the application sent no output)"), tool_call_id=c.call_id)
               for c in pending.calls]
    return (*(pending.before or (HumanMessage(pending.query),)), AIMessage("", tool_calls=calls), *results)


def parse_arguments(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as a dict (a model's malformed JSON is kept as text, not lost)."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def calls_of(message: Any) -> tuple[ToolCall, ...]:
    """The tool calls of a streamed reply (its chunks added together), with ids and JSON arguments."""
    calls = []
    for chunk in getattr(message, "tool_call_chunks", None) or []:
        if chunk.get("name"):
            call_id = chunk.get("id") or f"call_{uuid.uuid4().hex[:20]}"
            calls.append(ToolCall(call_id, str(chunk["name"]), chunk.get("args") or "{}"))
    return tuple(calls)


def client_tool(spec: dict[str, Any]) -> ClientTool:
    """A ``session.update`` tool (``{"type": "function", "name", "description", "parameters"}``).

    ``ValueError`` for anything else: Parley runs only function tools declared by the client.
    """
    if spec.get("type", "function") != "function":
        raise ValueError(f"tool type {spec.get('type')!r} is not supported (only function tools)")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("a function tool needs a name")
    parameters = spec.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise ValueError(f"tool {name!r}: parameters must be a JSON schema object")
    return ClientTool(name, str(spec.get("description") or ""), parameters)
