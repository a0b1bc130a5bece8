"""A local HTTP server on 127.0.0.1 for download tests: serves bytes the test sets, optionally misbehaving."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Site:
    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True  # honour Range requests
    truncate_next: int | None = None  # the next response stops after this many bytes of its body
    announce_length: bool = True  # send Content-Length (without it the body ends when the connection closes)
    resume_from: int | None = None  # answer a Range request from this byte (206), whatever it asked
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    url: str = ""


def handler_for(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 5  # a stuck client never holds the server

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            site.requests.append((self.path, range_header))
            body = site.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header)[1]) if range_header and site.ranges else 0
            if range_header and site.resume_from is not None:
                start = site.resume_from
            if start >= len(body) and start:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            partial = bool(start) or (range_header is not None and site.resume_from is not None)
            self.send_response(206 if partial else 200)
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            if site.announce_length:
                self.send_header("Content-Length", str(len(body) - start))
            else:
                self.close_connection = True
            self.end_headers()
            payload = body[start:]
            if site.truncate_next is not None:
                payload, site.truncate_next = payload[:site.truncate_next], None
                self.close_connection = True
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            """Quiet."""

    return Handler


@contextmanager
def serving(site: Site) -> Iterator[Site]:
    """`site` served on 127.0.0.1 (a free port) until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(site))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    site.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
