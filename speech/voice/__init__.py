"""One voice conversation: VAD events to turns, speculative replies, paced playout, barge-in.

Nothing here knows a socket: a session talks to its client through a ``ClientLink`` (``link.py``).
"""
