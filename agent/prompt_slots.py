"""The embedded model's read system prompts, kept on disk between starts.

Reading Parley's system prompt (about 90 tokens, one per language) is the embedded model's
warm-up: the first turn then finds it in llama.cpp's prompt cache. Measured here (load 4-5, two
shared cores) that read took 1.5-4 s per language at every start, on the start's critical path.
llama.cpp can save a slot's state (its tokens and KV cache, about 1.1 MB for this prompt) to a file
and restore it later (``/slots/{id}?action=save|restore``): a restore took 3 ms. So each prompt is
read once, saved, and restored at later starts.

A file's name is a hash of everything its content depends on (model, llama.cpp build, context size,
prompt text), so a changed prompt (the date is in it) or another model never restores a wrong state;
a file that does not restore (another llama.cpp build, a torn write) is read again and saved anew.
Even a restored state that did not match would only cost speed: llama.cpp compares a request's tokens
with the slot's before it reuses any of its cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# Files untouched for this long belong to old dates, prompts or models: removed at the next start.
STALE_AFTER_S = 3 * 24 * 3600


def slot_file_name(prompt: str, identity: Sequence[str]) -> str:
    """The file a slot that has read ``prompt`` is saved in (``identity``: model, build, context size)."""
    digest = hashlib.sha256(json.dumps([*identity, prompt], ensure_ascii=False).encode()).hexdigest()
    return f"{digest[:32]}.bin"


class PromptSlots:
    """Fills the embedded server's slots with system prompts: restored from a file, else read and saved."""

    def __init__(self, base_url: str, api_key: str, model_name: str, folder: Path | None,
                 identity: Sequence[str], timeout_s: float = 60.0) -> None:
        # The slot endpoints live beside /v1, at the server's root.
        self.root = base_url.removesuffix("/v1")
        self.base_url, self.api_key, self.model_name = base_url, api_key, model_name
        self.folder, self.identity, self.timeout_s = folder, tuple(identity), timeout_s

    def fill(self, prompts: Sequence[str]) -> dict[str, int]:
        """Put ``prompts[i]`` in slot ``i``; returns how many were restored and how many read."""
        counts = {"restored": 0, "read": 0}
        self._remove_stale()
        for slot, prompt in enumerate(prompts):
            name = slot_file_name(prompt, self.identity)
            if self.folder is not None and (self.folder / name).is_file() and self._restore(slot, name):
                (self.folder / name).touch()  # in use: not stale
                counts["restored"] += 1
                continue
            self._read(slot, prompt)
            counts["read"] += 1
            if self.folder is not None:
                self._save(slot, name)
        return counts

    def _save(self, slot: int, name: str) -> None:
        try:
            self._post(f"{self.root}/slots/{slot}?action=save", {"filename": name})
        except urllib.error.HTTPError as exc:  # e.g. a full disk: the slot still holds its prompt
            log.warning("embedded LLM: slot %d was not saved (%s); the next start reads its prompt again",
                        slot, exc.code)

    def _read(self, slot: int, prompt: str) -> None:
        body = {"model": self.model_name, "max_tokens": 1, "id_slot": slot,
                "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": "hi"}]}
        self._post(f"{self.base_url}/chat/completions", body)

    def _restore(self, slot: int, name: str) -> bool:
        try:
            reply = self._post(f"{self.root}/slots/{slot}?action=restore", {"filename": name})
        except urllib.error.HTTPError as exc:  # e.g. a file from another llama.cpp build
            log.info("embedded LLM: slot file %s did not restore (%s); reading the prompt again", name, exc.code)
            return False
        restored = reply.get("n_restored", 0)
        return isinstance(restored, int) and restored > 0

    def _post(self, url: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
            reply = json.loads(resp.read() or b"{}")
        return reply if isinstance(reply, dict) else {}

    def _remove_stale(self) -> None:
        if self.folder is None:
            return
        now = time.time()
        for path in self.folder.glob("*.bin"):
            try:
                if now - path.stat().st_mtime > STALE_AFTER_S:
                    path.unlink()
            except OSError:  # another instance removed it first
                pass
