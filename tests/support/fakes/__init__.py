"""Real HTTP servers on 127.0.0.1 that stand in for the remote APIs Parley calls.

They speak the real wire formats (OpenAI chat completions with SSE streaming,
Serper search) and follow a scripted timeline set by each test.
"""
