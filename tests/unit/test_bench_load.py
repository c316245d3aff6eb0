"""The bench's raw load generator against a real HTTP server: what it counts is what was answered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from bench.load import Client
from tests.http_stub import answer, serving


class _Answers(BaseHTTPRequestHandler):
    """Echoes the body's "n" back; "n" picks the answer: 3 -> 400, 5 -> chunked, 7 -> close after answering."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, bytes, str]] = []  # noqa: RUF012 (one server per test)

    def do_POST(self) -> None:
        sent = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, sent, self.headers.get("X-Test", "")))
        n = json.loads(sent)["n"]
        body = json.dumps({"n": n, "status": "odd" if n % 2 else "even"}).encode()
        if n == 5:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            return
        headers = {"Location": f"/things/{n}"}
        if n == 7:
            headers["Connection"] = "close"
            self.close_connection = True
        answer(self, 400 if n == 3 else 200, body, headers)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Answers.seen = []
    with serving(_Answers) as url:
        yield f"{url}/hook"


def test_raw_client_counts_answers_errors_and_reconnects(server: str) -> None:
    bodies = [json.dumps({"n": n}).encode() for n in range(20)]
    headers = [{"Content-Type": "application/json", "X-Test": f"h{n}"} for n in range(20)]
    client = Client(3, threading.Event(), transport="raw")

    phase = client.run(server, bodies, expect=200, headers=headers,
                       classify=lambda content: json.loads(content)["status"])

    # Every body reached the server once, with its own headers, on the URL's path.
    assert sorted(_Answers.seen) == sorted(("/hook", b, f"h{n}") for n, b in enumerate(bodies))
    assert phase.sent == 20
    # 3 answered 400; 5 answered in chunks, which the raw transport refuses to read.
    assert phase.errors == {"HTTP 400": 1, "RawAnswerError": 1}
    assert phase.ok == 18
    assert phase.outcomes == {"even": 10, "odd": 8}  # 3 and 5 are not counted
    assert sorted(phase.locations) == sorted(f"/things/{n}" for n in range(20) if n not in (3, 5))
    assert all(ms >= 0 for ms in phase.latencies_ms)


def test_raw_client_stops_when_told(server: str) -> None:
    stop = threading.Event()
    stop.set()
    phase = Client(2, stop, transport="raw").run(server, [b'{"n": 0}'] * 5, expect=200)
    assert phase.ok == 0
    assert _Answers.seen == []


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown transport"):
        Client(1, threading.Event(), transport="carrier-pigeon")
