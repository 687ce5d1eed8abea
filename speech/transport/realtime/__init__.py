"""OpenAI Realtime API on ``/v1/realtime``: stock SDK clients talk to Parley's sessions (docs/realtime.md)."""
