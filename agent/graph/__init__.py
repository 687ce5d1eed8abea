"""The LangGraph conversation graph: state, prompts, router, nodes and the builder."""

from agent.graph.context import GraphContext
from agent.graph.graph import build_graph
from agent.graph.state import TurnState

__all__ = ["GraphContext", "TurnState", "build_graph"]
