"""Parley's speech side: audio in, turn-taking, audio out, and the sockets that carry them.

``engines/`` holds the models (VAD, ASR, TTS, turn-end), ``voice/`` one conversation's turns
(it knows no socket), ``transport/`` the sockets and HTTP routes. ``audio``, ``text`` and
``protocol`` are shared by all three. See docs/architecture.md.
"""
