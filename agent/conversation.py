"""A session's short-term conversation: a bounded window of recent exchanges."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from agent.client_tools import ClientOptions
from agent.ids import validate_user_id


@dataclass
class Conversation:
    """One user's current session. Never shared between sessions."""

    user_id: str
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    max_turns: int = 8
    _turns: deque[tuple[str, str]] = field(init=False)
    client: ClientOptions = field(default_factory=ClientOptions)
    """What this session's client adds to its turns: instructions, its own tools (agent/client_tools.py)."""

    def __post_init__(self) -> None:
        validate_user_id(self.user_id)
        self._turns = deque(maxlen=max(1, self.max_turns))

    def messages(self) -> list[AnyMessage]:
        """The remembered exchanges as chat messages, oldest first."""
        out: list[AnyMessage] = []
        for user_text, reply in self._turns:
            out.extend([HumanMessage(user_text), AIMessage(reply)])
        return out

    def record(self, user_text: str, reply: str) -> None:
        """Remember an exchange. For an interrupted reply pass only what the user heard."""
        self._turns.append((user_text, reply))

    def drop_last(self, user_text: str) -> None:
        """Forget the last exchange if it is the one for ``user_text``."""
        if self._turns and self._turns[-1][0] == user_text:
            self._turns.pop()

    def replace_last(self, user_text: str, reply: str) -> None:
        """Correct the last exchange (a reply that was cut after it had been recorded in full)."""
        self.drop_last(user_text)
        self._turns.append((user_text, reply))

    def clear(self) -> None:
        """Start a new topic: forget the short-term history (long-term memory stays)."""
        self._turns.clear()

    def __len__(self) -> int:
        return len(self._turns)
