"""``python -m agent.memory``: inspect and edit the long-term memory store from a shell."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from agent.embedding import MEMORY_EMBEDDING_MODEL
from agent.ids import InvalidIdError

COMMANDS = ("users", "list", "search", "show", "delete", "clear", "export", "stats")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m agent.memory", description="Inspect Parley's long-term memory."
    )
    ap.add_argument("--memory_dir", default="./data/memory", help="memory directory (default ./data/memory)")
    ap.add_argument("--memory_db", default=os.environ.get("PARLEY_MEMORY_DB") or None,
                    help="PostgreSQL URL of a shared memory (env PARLEY_MEMORY_DB); replaces --memory_dir")
    ap.add_argument(
        "--memory_embedding_model_name", "--embedding_model_name", dest="embedding_model_name",
        default=MEMORY_EMBEDDING_MODEL,
        help=f"memory's embedder, as the server's --memory_embedding_model_name (default {MEMORY_EMBEDDING_MODEL})",
    )
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("users", help="list user ids that have memories")
    p = sub.add_parser("list", help="a user's memories, newest first")
    p.add_argument("--user", required=True)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p = sub.add_parser("search", help="hybrid search of a user's memories")
    p.add_argument("--user", required=True)
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5)
    p = sub.add_parser("show", help="one memory in full")
    p.add_argument("--user", required=True)
    p.add_argument("id")
    p = sub.add_parser("delete", help="delete one memory")
    p.add_argument("--user", required=True)
    p.add_argument("id")
    p = sub.add_parser("clear", help="delete all of a user's memories (needs --yes)")
    p.add_argument("--user", required=True)
    p.add_argument("--yes", action="store_true", help="really delete everything")
    p = sub.add_parser("export", help="a user's memories as JSON lines")
    p.add_argument("--user", required=True)
    p.add_argument("--out", help="write to this file instead of stdout")
    p = sub.add_parser("stats", help="counts and index information")
    p.add_argument("--user", required=True)
    # Let the global flags also come after the subcommand (`... list --user u --json`).
    for sp in sub.choices.values():
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--memory_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--memory_db", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return ap


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M")


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(rows: list[list[str]], header: list[str], out: TextIO) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)] if rows else None
    if widths is None:
        print("(none)", file=out)
        return
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _record_rows(records: list[Any], with_score: bool = False) -> tuple[list[str], list[list[str]]]:
    header = ["id", "kind", "created", "session", "text"]
    if with_score:
        header.insert(0, "score")
    rows = []
    for r in records:
        text = _short(r.text) + (f"  [superseded by {r.superseded_by[:8]}]" if r.superseded_by else "")
        row = [r.id, r.kind, _when(r.created_at), r.session_id or "-", text]
        if with_score:
            row.insert(0, f"{r.score:.4f}")
        rows.append(row)
    return header, rows


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 not found, 2 bad input)."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    # Imported here so `--help` stays fast (no torch).
    from agent.embedding import load_embedder
    from agent.memory.store import MemoryNotFoundError, MemoryStore

    if args.memory_db:
        return _main_pg(args, out)
    memory_dir = Path(args.memory_dir)
    if args.command != "users" and not memory_dir.is_dir():
        print(f"error: memory directory not found: {memory_dir}", file=sys.stderr)
        return 2
    needs_embedder = args.command == "search"
    try:
        if args.command == "users":
            if not (memory_dir / "memory.sqlite3").exists():
                users: list[str] = []
            else:
                from agent.memory.records import SQLiteRecordStore

                rs = SQLiteRecordStore(memory_dir / "memory.sqlite3")
                users = rs.users()
                rs.close()
            if args.json:
                print(json.dumps(users), file=out)
            else:
                _table([[u] for u in users], ["user"], out)
            return 0
        embedder = load_embedder(args.embedding_model_name) if needs_embedder else _LazyEmbedder(args)
        store = MemoryStore(memory_dir, embedder=embedder)
        try:
            return _run(args, store, out)
        finally:
            store.close()
    except InvalidIdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _main_pg(args: argparse.Namespace, out: TextIO) -> int:
    """:func:`main` on a PostgreSQL memory (``--memory_db``)."""
    from agent.embedding import load_embedder
    from agent.memory.records_pg import PostgresRecordStore
    from agent.memory.store import MemoryNotFoundError, MemoryStore

    try:
        records = PostgresRecordStore(args.memory_db, max_size=2)
    except (ConnectionError, RuntimeError) as exc:  # the message never holds the password
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "users":
            users = records.users()
            if args.json:
                print(json.dumps(users), file=out)
            else:
                _table([[u] for u in users], ["user"], out)
            return 0
        embedder = load_embedder(args.embedding_model_name) if args.command == "search" else _LazyEmbedder(args)
        return _run(args, MemoryStore(None, embedder=embedder, records=records), out)
    except InvalidIdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        records.close()


class _LazyEmbedder:
    """Loads the real embedder only if a command needs it (list/show/delete do not embed text).

    ``name`` and ``dim`` are known without loading for the default model, so the
    index can be checked against its watermark cheaply.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._real: Any = None
        if args.embedding_model_name in ("minilm", "all-MiniLM-L6-v2"):
            self.name, self.dim = "all-MiniLM-L6-v2", 384
        elif args.embedding_model_name in ("use-multilingual", "usem3"):
            self.name, self.dim = "use-multilingual", 512
        else:
            self._load()

    def _load(self) -> Any:
        if self._real is None:
            from agent.embedding import load_embedder

            self._real = load_embedder(self._args.embedding_model_name)
            self.name, self.dim = self._real.name, self._real.dim
        return self._real

    def encode(self, texts: list[str]) -> Any:
        return self._load().encode(texts)


def _run(args: argparse.Namespace, store: Any, out: TextIO) -> int:
    user = args.user
    if args.command == "list":
        recs = store.list(user, limit=args.limit, offset=args.offset)
        if args.json:
            print(json.dumps([r.to_dict() for r in recs], ensure_ascii=False), file=out)
        else:
            header, rows = _record_rows(recs)
            _table(rows, header, out)
    elif args.command == "search":
        recs = store.search(user, args.query, k=args.k)
        if args.json:
            print(json.dumps([r.to_dict() for r in recs], ensure_ascii=False), file=out)
        else:
            header, rows = _record_rows(recs, with_score=True)
            _table(rows, header, out)
    elif args.command == "show":
        r = store.get(user, args.id)
        if args.json:
            print(json.dumps(r.to_dict(), ensure_ascii=False), file=out)
        else:
            for key, value in r.to_dict().items():
                if key == "created_at":
                    value = f"{_when(value)} ({value})"
                print(f"{key:>13}: {value}", file=out)
    elif args.command == "delete":
        store.delete(user, args.id)
        print(json.dumps({"deleted": args.id}) if args.json else f"deleted {args.id}", file=out)
    elif args.command == "clear":
        if not args.yes:
            print(f"error: this deletes every memory of {user!r}; add --yes to confirm", file=sys.stderr)
            return 2
        n = store.clear(user)
        print(json.dumps({"cleared": n}) if args.json else f"deleted {n} memories of {user}", file=out)
    elif args.command == "export":
        n = _export(store, user, args.out, out)
        if args.out:
            msg = json.dumps({"exported": n, "file": args.out}) if args.json else f"exported {n} memories"
            print(msg, file=out)
    elif args.command == "stats":
        st = store.stats(user)
        if args.json:
            print(json.dumps(st, ensure_ascii=False), file=out)
        else:
            rows = [
                ["total", str(st["total"])],
                *[[f"kind {k}", str(v)] for k, v in sorted(st["by_kind"].items())],
                ["superseded", str(st["superseded"])],
                ["sessions", str(st["sessions"])],
                ["oldest", _when(st["oldest"])],
                ["newest", _when(st["newest"])],
                ["index", "{type} ({vectors} vectors, {model})".format(**st["index"])],
            ]
            _table(rows, ["stat", "value"], out)
    return 0


def _export(store: Any, user: str, path: str | None, out: TextIO) -> int:
    n = 0
    target = Path(path).open("w", encoding="utf-8") if path else out  # noqa: SIM115 - closed below only if opened here
    try:
        offset = 0
        while True:
            page = store.list(user, limit=1000, offset=offset)
            if not page:
                break
            for r in page:
                target.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
                n += 1
            offset += len(page)
    finally:
        if path:
            target.close()
    return n
