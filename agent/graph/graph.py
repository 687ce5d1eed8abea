"""Build the conversation graph: one branch per registered tool.

The graph::

    START -> recall_memories -> route -+-> respond -> remember -> END
                                       +-> tool_<name> -> respond
"""

from __future__ import annotations

from collections.abc import Hashable

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent.graph import nodes
from agent.graph.context import GraphContext
from agent.graph.state import TurnState
from agent.tools.registry import ToolRegistry


def build_graph(registry: ToolRegistry) -> CompiledStateGraph[TurnState, GraphContext, TurnState, TurnState]:
    """Compile the graph for the tools in ``registry``; adding a tool needs no change here."""
    builder = StateGraph(TurnState, context_schema=GraphContext)
    builder.add_node("recall_memories", nodes.recall_memories)
    builder.add_node("route", nodes.route)
    builder.add_node("respond", nodes.respond)
    builder.add_node("remember", nodes.remember)
    branches: dict[Hashable, str] = {"respond": "respond"}  # the type add_conditional_edges asks for
    for name in registry.names():
        node = f"tool_{name}"
        builder.add_node(node, nodes.make_tool_node(name))
        builder.add_edge(node, "respond")
        branches[node] = node
    builder.add_edge(START, "recall_memories")
    builder.add_edge("recall_memories", "route")
    builder.add_conditional_edges("route", nodes.next_step, branches)
    builder.add_edge("respond", "remember")
    builder.add_edge("remember", END)
    return builder.compile(name="parley")
