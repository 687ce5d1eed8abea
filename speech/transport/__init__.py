"""The server's sockets and HTTP routes: ``/ws``, the CleanS2S sockets, the memory API, probes, metrics."""
