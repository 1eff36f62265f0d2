"""A local HTTP server that answers the Hugging Face hub's file API (HEAD and GET on /REPO/resolve/REV/FILE, with
byte ranges) for a few repositories, so the online path runs for real through huggingface_hub (HF_ENDPOINT).

Repositories: acme/tiny (config.json, generation_config.json and a model.safetensors header; revision "v1" has
another config), acme/gated (gated), acme/noconfig (no config.json), acme/slow (answers after SLOW_S seconds),
acme/drop (closes the connection without answering)."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_S = 4.0


def safetensors_header(parameters: dict[str, int]) -> bytes:
    """A safetensors file's first bytes: the 8-byte header length and a header declaring one tensor per dtype."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for i, (dtype, count) in enumerate(parameters.items()):
        size = count * {"BF16": 2, "F32": 4, "F16": 2, "I8": 1}[dtype]
        header[f"tensor_{i}"] = {"dtype": dtype, "shape": [count], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw


class FakeHub:
    def __init__(self, files: dict[tuple[str, str, str], bytes]):
        self.files = files  # (repo, revision, filename) -> content
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub.answer(self, head=True)

            def do_GET(self):
                hub.answer(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        self.requests.append(f"{handler.command} {handler.path}")
        parts = handler.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self.error(handler, 404, "RepoNotFound")
        repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if repo == "acme/slow":
            time.sleep(SLOW_S)
        if repo == "acme/drop":
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return None
        if repo == "acme/gated":
            return self.error(handler, 401, "GatedRepo", "Access to model acme/gated is restricted.")
        if not any(r == repo for r, _, _ in self.files):
            return self.error(handler, 401, "RepoNotFound", "Repository Not Found")
        if not any(r == repo and v == revision for r, v, _ in self.files):
            return self.error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        content = self.files.get((repo, revision, filename))
        if content is None:
            return self.error(handler, 404, "EntryNotFound", "Entry not found")
        commit = hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()
        etag = hashlib.sha256(content).hexdigest()
        body, status = content, 200
        wanted = handler.headers.get("range") or handler.headers.get("Range")
        if wanted and wanted.startswith("bytes=") and not head:
            first, _, last = wanted[6:].partition("-")
            body = content[int(first): int(last) + 1 if last else None]
            status = 206
        handler.send_response(status)
        handler.send_header("ETag", f'"{etag}"')
        handler.send_header("X-Repo-Commit", commit)
        handler.send_header("Content-Length", str(len(body) if not head else len(content)))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
        return None

    @staticmethod
    def error(handler, status: int, code: str, message: str = "") -> None:
        body = json.dumps({"error": message or code}).encode()
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message or code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
