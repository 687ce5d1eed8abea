"""Parley's agent: the LangGraph conversation graph, its tools and long-term memory."""
