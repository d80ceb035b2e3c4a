"""A scripted OpenAI-compatible chat server on loopback, for judge tests.

``ScriptedServer(script)`` where ``script(body, n) -> action`` gets the request
JSON and the 0-based call number and returns one of:
``("ok", text)``, ``("status", code)`` / ``("status", code, {"Retry-After": "0"})``,
``("sleep", seconds, text)`` (answers late; with a short client timeout this is a
timeout), ``("garbage",)`` (HTTP 200 with a non-JSON body),
``("raw", code, headers, body_bytes)`` (exactly these headers and bytes; a
Content-Length is added unless given), ``("reset",)`` (the connection is closed
with an RST before any reply) and ``("truncated", text)`` (a valid reply cut in
the middle of its JSON, with a matching Content-Length).
Every request is recorded in ``calls`` (thread-safe).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class ScriptedServer:
    def __init__(self, script: Callable[[dict, int], tuple]):
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    n = len(server.calls)
                    server.calls.append(body)
                action = server.script(body, n)
                try:
                    self._act(body, action)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _act(self, body, action):
                kind = action[0]
                if kind == "sleep":
                    time.sleep(action[1])
                    kind, action = "ok", ("ok", action[2])
                if kind == "ok":
                    text = action[1]
                    payload = {"id": "x", "object": "chat.completion", "model": body.get("model"),
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}],
                               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
                    self._send(200, json.dumps(payload).encode())
                elif kind == "status":
                    self._send(action[1], b'{"error": {"message": "scripted"}}', action[2] if len(action) > 2 else {})
                elif kind == "garbage":
                    self._send(200, b"<html>not json</html>")
                elif kind == "raw":
                    _code, headers, data = action[1], dict(action[2]), action[3]
                    self.send_response(_code)
                    if not any(k.lower() == "content-length" for k in headers):
                        headers["Content-Length"] = str(len(data))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                elif kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                elif kind == "truncated":
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": action[1]}}]})
                    self._send(200, payload[: len(payload) // 2].encode())
                else:
                    raise ValueError(kind)

            def _send(self, code, data, headers=None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def user_texts(self) -> list[str]:
        with self._lock:
            return [b["messages"][-1]["content"] for b in self.calls]


