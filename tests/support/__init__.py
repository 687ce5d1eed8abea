"""What tests and benchmarks share (bench imports this package; tests never import bench).

``server_process`` (``python server.py`` as a child), ``in_process`` (a server in the test's
event loop), ``engine_fakes`` (speech engines without models), ``fakes`` (the remote services:
LLM, Serper), ``voice_client`` and ``browser`` (clients), ``postgres`` (a private PostgreSQL),
``speech`` (real engines and TTS-made speech), ``ports`` and ``paths``.
"""
