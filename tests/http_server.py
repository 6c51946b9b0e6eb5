"""A download host on 127.0.0.1 for tests: serves files from a dict, honours Range, and can misbehave on demand.

``files`` maps a URL path ("/a/b.bin") to bytes. ``cut_after`` maps a path to a byte count after which the
connection is dropped (once, then cleared: an interrupted transfer); ``ignore_range`` makes the server answer 200
to range requests; ``log`` records (method, path, range header) of every request.
"""
from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileHost:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}  # extra response headers per path
        self.cut_after: dict[str, int] = {}
        self.ignore_range = False
        self.log: list[tuple[str, str, str | None]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def handler(self):
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _send(self, head_only: bool):
                path = self.path.split("?", 1)[0]
                rng = self.headers.get("Range")
                host.log.append((self.command, path, rng))
                if path not in host.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = host.files[path]
                start, status = 0, 200
                if rng and not host.ignore_range and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                chunk = body[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                for k, v in host.headers.get(path, {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if head_only:
                    return
                cut = host.cut_after.pop(path, None)
                if cut is not None:
                    self.wfile.write(chunk[:max(0, cut - start)])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(2)
                    return
                self.wfile.write(chunk)

            def do_GET(self):
                self._send(False)

            def do_HEAD(self):
                self._send(True)

        return Handler

    def __enter__(self) -> "FileHost":
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
