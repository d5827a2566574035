"""The plumbing of the network fakes: a real HTTP server on 127.0.0.1, a request log, a queue
of scripted answers per route, and faults. Each network's fake (telegram.py, mastodon.py, ...)
subclasses FakeServer with that network's routes, checks and response shapes.

Faults are how networks misbehave in the wild: the request arrives and the network DOES act on it
(the post is created), but the answer is lost on the way back: never sent (HANG), sent after the
client gave up (LATE), the connection closed before any answer (DROP), a proxy's 502 or 504 page
(BAD_GATEWAY, GATEWAY_TIMEOUT), a 200 whose body is cut off or garbage (GARBLED), or a 200 that
names no id (NO_ID), or an answer trickled back one byte every TRICKLE_EVERY seconds, status line
and headers included (TRICKLE) or headers at once and then the body (TRICKLE_BODY): every read
succeeds, so only a total deadline ends the call. REFUSE is the one fault where nothing arrives: the port refuses connections
(`refuse_connections()` ... `accept_connections()`). Tests then check that a post exists at most
once whatever the client concluded."""

from __future__ import annotations

import email.policy
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict


@dataclass
class Answer:
    """One answer: a status, a JSON body (or raw bytes), headers, and an optional delay."""

    status: int
    json: object = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    """One request as the server received it."""

    method: str
    path: str
    """The full path as received, with the query."""
    route: str
    """What the fake dispatches on (network-specific: e.g. the Bot API method name)."""
    headers: CaseInsensitiveDict
    """Looked up case-insensitively, as HTTP names are (clients differ in how they write them)."""
    body: object
    """JSON as a dict, a form as {name: value}, multipart as {name: text, or bytes for file parts}."""
    query: dict[str, str] = field(default_factory=dict)
    auth_problem: str | None = None
    """Why the fake refused the request's credentials (see FakeServer.refuse), or None."""


HANG, LATE, DROP, BAD_GATEWAY, GATEWAY_TIMEOUT, GARBLED, NO_ID, TRICKLE, TRICKLE_BODY, REFUSE = (
    "hang", "late", "drop", "502", "504", "garbled", "no id", "trickle", "trickle body", "refuse")
AFTER_ACTING = (HANG, LATE, DROP, BAD_GATEWAY, GATEWAY_TIMEOUT, GARBLED, NO_ID, TRICKLE, TRICKLE_BODY)
"""The faults in which the network acted on the request: the outcome is unknown to the client."""
LATE_BY = 1.5
"""Seconds a LATE answer waits: longer than the publish timeout the fault tests give their clients."""
HANG_FOR = 30.0
"""A HANG holds the connection this long at most (or until the fake stops)."""
TRICKLE_EVERY = 0.2
"""Seconds between two bytes of a trickled answer: each read waits far less than any timeout the
tests give, and the whole answer (some 200 bytes) takes far longer."""
TRICKLE_FOR = 10.0
"""A trickle hangs up after this long: a client without a total deadline then fails late, not never."""


class FakeServer:
    """Subclasses implement route(method, path) and handle(request) -> Answer."""

    def __init__(self):
        self.requests: list[Request] = []
        self._queues: dict[tuple[str, str], deque[Answer]] = {}
        self._faults: dict[tuple[str, str], deque[str]] = {}
        self.on_request = None
        """A test's hook, called with each request once the fake has acted on it (before it answers)."""
        self.latency = None
        """A slow network: None, or a function giving the seconds each answer waits after the fake
        has acted on the request (a client that dies meanwhile leaves a post it never heard of)."""
        self.lock = threading.RLock()
        self._stopping = threading.Event()
        self._port = 0
        self._listen()

    def _listen(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler_for(self))
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        # A short poll interval: shutdown() waits up to one interval, at every test's teardown.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def refuse_connections(self) -> None:
        """Close the listening port: connections are refused, nothing reaches the network."""
        self._server.shutdown()
        self._server.server_close()

    def accept_connections(self) -> None:
        """Listen again on the same port, after refuse_connections()."""
        self._listen()
        self.start()

    def fail(self, method: str, route: str, fault: str, times: int = 1) -> None:
        """The next `times` requests to `method route` are acted on as usual (the post is created),
        then their answer is lost as `fault` says (see the module docstring)."""
        with self.lock:
            self._faults.setdefault((method.upper(), route), deque()).extend([fault] * times)

    def _take_fault(self, request: Request) -> str | None:
        with self.lock:
            queue = self._faults.get((request.method, request.route))
            return queue.popleft() if queue else None

    def enqueue(self, method: str, route: str, *, status: int, json: object = None, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        """Answer the next `method route` request with this instead of the normal behaviour."""
        raw = body.encode() if isinstance(body, str) else body
        with self.lock:
            self._queues.setdefault((method.upper(), route), deque()).append(
                Answer(status, json, raw, dict(headers or {}), delay))

    def routed(self, route: str) -> list[Request]:
        return [r for r in self.requests if r.route == route]

    # --- For subclasses --------------------------------------------------------------------------

    def route(self, method: str, path: str) -> str:
        return path

    def handle(self, request: Request) -> Answer:
        return Answer(404, {"error": "not found"})

    def refuse(self, request: Request) -> Answer | None:
        """An answer that wins even over scripted ones (bad credentials), or None to go on."""
        return None

    # --- Plumbing --------------------------------------------------------------------------------

    def _answer(self, request: Request) -> Answer:
        with self.lock:
            self.requests.append(request)
            refusal = self.refuse(request)
            if refusal is not None:
                return refusal
            queue = self._queues.get((request.method, request.route))
            answer = queue.popleft() if queue else self.handle(request)
            if self.on_request is not None:
                self.on_request(request)
            return answer


def parse_body(raw: bytes, content_type: str) -> object:
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        parts = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            parts[name] = payload if part.get_filename() else payload.decode()
        return parts
    if content_type.startswith("application/x-www-form-urlencoded"):
        # A key written as name[] (Rails-style arrays, e.g. Mastodon's media_ids[]) keeps every value.
        return {k: (v if k.endswith("[]") else v[0])
                for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
    if content_type.startswith("application/json"):
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None
    return raw


def _handler_for(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_HEAD(self) -> None:
            self._serve()

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            request = Request(self.command, self.path, fake.route(self.command, parts.path),
                              CaseInsensitiveDict(self.headers.items()), parse_body(raw, self.headers.get("Content-Type", "")),
                              query)
            answer = fake._answer(request)
            fault = fake._take_fault(request)
            if fault is not None:
                answer = self._misbehave(fault, answer)
                if answer is None:
                    return
            if answer.delay and fake._stopping.wait(answer.delay):
                return
            if fake.latency is not None and fake._stopping.wait(fake.latency()):
                return
            payload = answer.body if answer.body is not None else json.dumps(answer.json).encode()
            content_type = ("text/html; charset=utf-8" if answer.body is not None
                            else "application/json; charset=utf-8")
            if fault in (TRICKLE, TRICKLE_BODY):
                self._trickle(fault, answer, content_type, payload)
                return
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _trickle(self, fault: str, answer: Answer, content_type: str, payload: bytes) -> None:
            """Send the answer one byte every TRICKLE_EVERY seconds (TRICKLE_BODY: the headers at once),
            until the client hangs up, the fake stops, or TRICKLE_FOR has passed."""
            lines = [f"HTTP/1.1 {answer.status} {self.responses.get(answer.status, ('',))[0]}",
                     f"Content-Type: {content_type}", f"Content-Length: {len(payload)}",
                     *(f"{name}: {value}" for name, value in answer.headers.items())]
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            slow = head + payload if fault == TRICKLE else payload
            self.close_connection = True  # whatever the client read of it, this connection is spent
            try:
                if fault == TRICKLE_BODY:
                    self.wfile.write(head)
                for byte in slow[:int(TRICKLE_FOR / TRICKLE_EVERY)]:
                    self.wfile.write(bytes([byte]))
                    if fake._stopping.wait(TRICKLE_EVERY):
                        return
            except OSError:
                pass  # the client gave up (what a total deadline does)

        def _misbehave(self, fault: str, answer: Answer) -> Answer | None:
            """The answer a fault turns `answer` into, or None when no answer is sent at all."""
            if fault == HANG:
                fake._stopping.wait(HANG_FOR)
                self.close_connection = True
                return None
            if fault == DROP:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return None
            if fault == LATE:
                return Answer(answer.status, answer.json, answer.body, answer.headers, delay=LATE_BY)
            if fault in (BAD_GATEWAY, GATEWAY_TIMEOUT):
                return Answer(int(fault), body=f"<html><body><h1>{fault} Gateway</h1></body></html>".encode())
            if fault == GARBLED:
                return Answer(200, body=b'{"data": {"id": "12')  # cut off mid-answer
            if fault == NO_ID:
                return Answer(200, json={})
            if fault in (TRICKLE, TRICKLE_BODY):
                return answer  # sent as it is, slowly (_trickle)
            raise ValueError(f"unknown fault {fault!r}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
