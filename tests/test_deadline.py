"""bridge.deadline: a total deadline per call, for httpx and requests, against trickling servers on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time

import httpx
import pytest
import requests

from bridge import deadline_httpx
from bridge import deadline_requests
from bridge.deadline import DeadlineAdapter, current_deadline, deadline_transport, install_network_backend, total_deadline
from tests.fakes.feed_server import RecordedRequest, Reply

DEADLINE = 1.0
MARGIN = 0.5
"""How far past the deadline a cut call may end: one clamped read, thread scheduling, a slow CI box."""


@pytest.fixture
def httpx_client():
    # A per-read timeout far above the deadline: only the total deadline can end these calls in time.
    with httpx.Client(transport=deadline_transport(), timeout=30) as client:
        yield client


@pytest.fixture
def session():
    with requests.Session() as s:
        adapter = DeadlineAdapter()
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        yield s


@pytest.fixture
def trickling(feed_server):
    """Paths on the local server: headers one byte every 0.2 s, a body one byte every 0.2 s, silence."""
    feed_server.add_trickling_headers("/headers", interval=0.2)
    # Finite (5 s), so code without a total deadline fails these tests instead of hanging them.
    feed_server.add_slow("/body", chunk=b"<", interval=0.2, chunks=25)
    feed_server.add_slow("/short", chunk=b"<", interval=0.2, chunks=4)

    def silent(request: RecordedRequest, reply: Reply) -> None:
        reply.stop.wait(5)

    feed_server.handle("/silent", silent)
    feed_server.add("/fast", "ok")
    return feed_server


def _timed(call):
    start = time.monotonic()
    try:
        return call(), time.monotonic() - start
    except Exception as exc:  # the test asserts on the type
        return exc, time.monotonic() - start


class TestHttpx:
    @pytest.mark.parametrize(("path", "phase"), [("/headers", "waiting for the response headers"),
                                                 ("/body", "reading the response body"),
                                                 ("/silent", "waiting for the response headers")])
    def test_trickling_or_silent_server_is_cut_at_the_total_deadline(self, trickling, httpx_client, path, phase):
        """A GET to a server trickling its headers or body, or saying nothing, ends at 1 s with a ReadTimeout naming the phase."""
        with total_deadline(DEADLINE):
            error, elapsed = _timed(lambda: httpx_client.get(trickling.url(path)))
        assert isinstance(error, httpx.ReadTimeout)
        assert str(error) == f"total deadline of 1s passed while {phase}"
        assert elapsed < DEADLINE + MARGIN

    def test_post_with_trickled_answer_is_cut(self, trickling, httpx_client):
        """A POST (what a publisher sends) whose answer trickles is cut at the deadline too."""
        with total_deadline(DEADLINE):
            error, elapsed = _timed(lambda: httpx_client.post(trickling.url("/headers"), json={"text": "x"}))
        assert isinstance(error, httpx.ReadTimeout) and elapsed < DEADLINE + MARGIN

    def test_streamed_body_read_inside_the_block_is_cut(self, trickling, httpx_client):
        """A streamed body is cut while it is read inside the block."""
        with total_deadline(DEADLINE):
            with httpx_client.stream("GET", trickling.url("/body")) as response:
                error, elapsed = _timed(lambda: b"".join(response.iter_raw()))
        assert isinstance(error, httpx.ReadTimeout) and "reading the response body" in str(error)

    def test_fast_calls_pass_inside_and_outside_a_block(self, trickling, httpx_client):
        """A quick answer is untouched by a deadline, and without a block the transport is a plain one."""
        with total_deadline(DEADLINE) as deadline:
            assert httpx_client.get(trickling.url("/fast")).text == "ok"
            assert httpx_client.get(trickling.url("/fast")).text == "ok"  # a kept-alive connection too
        assert not deadline.expired
        assert httpx_client.get(trickling.url("/fast")).text == "ok"

    def test_nothing_is_cut_after_the_block(self, trickling, httpx_client):
        """A call made after a block ends may take longer than that block's deadline."""
        with total_deadline(0.3):
            httpx_client.get(trickling.url("/fast"))
        assert httpx_client.get(trickling.url("/short")).text == "<<<<"

    def test_expired_deadline_refuses_to_connect(self, trickling, httpx_client):
        """A call started after the deadline passed fails at once with ConnectTimeout."""
        with total_deadline(0):
            with pytest.raises(httpx.ConnectTimeout, match="total deadline of 0s passed while connecting"):
                httpx_client.get(trickling.url("/fast"))

    def test_the_backend_is_installed_on_the_installed_httpx(self):
        """On the installed httpx/httpcore the transport's pool really uses the clamping backend, with and without a proxy."""
        for transport in (deadline_transport(), deadline_transport(proxy=httpx.Proxy("http://127.0.0.1:9"))):
            assert isinstance(transport._pool._network_backend, deadline_httpx._DeadlineBackend)

    def test_a_changed_httpx_fails_loudly(self):
        """If httpx no longer keeps its pool where we look, building the transport raises instead of losing the deadline."""
        transport = httpx.HTTPTransport()
        del transport._pool
        with pytest.raises(RuntimeError, match="bridge/deadline_httpx.py must be updated"):
            install_network_backend(transport)


class TestRequests:
    @pytest.mark.parametrize(("path", "phase"), [("/headers", "waiting for the response headers"),
                                                 ("/body", "reading the response body"),
                                                 ("/silent", "waiting for the response headers")])
    def test_trickling_or_silent_server_is_cut_at_the_total_deadline(self, trickling, session, path, phase):
        """A GET to a server trickling its headers or body, or saying nothing, ends at 1 s with a ReadTimeout naming the phase."""
        with total_deadline(DEADLINE):
            error, elapsed = _timed(lambda: session.get(trickling.url(path), timeout=30))
        assert isinstance(error, requests.exceptions.ReadTimeout)
        assert str(error) == f"total deadline of 1s passed while {phase}"
        assert elapsed < DEADLINE + MARGIN

    def test_post_with_trickled_answer_is_cut(self, trickling, session):
        """A POST (what tweepy and Mastodon.py send) whose answer trickles is cut at the deadline, even with no timeout of its own."""
        with total_deadline(DEADLINE):
            error, elapsed = _timed(lambda: session.post(trickling.url("/headers"), json={"text": "x"}))
        assert isinstance(error, requests.exceptions.ReadTimeout) and elapsed < DEADLINE + MARGIN

    def test_fast_calls_pass_inside_and_outside_a_block(self, trickling, session):
        """A quick answer is untouched by a deadline, and without a block the adapter is a plain one."""
        with total_deadline(DEADLINE) as deadline:
            assert session.get(trickling.url("/fast")).text == "ok"
            assert session.get(trickling.url("/fast")).text == "ok"
        assert not deadline.expired
        assert session.get(trickling.url("/fast")).text == "ok"

    def test_nothing_is_cut_after_the_block(self, trickling, session):
        """The block's timer is cancelled when it ends: a later, longer call is not cut."""
        with total_deadline(0.3):
            session.get(trickling.url("/fast"))
        assert session.get(trickling.url("/short")).text == "<<<<"

    def test_expired_deadline_refuses_to_connect(self, trickling, session):
        """A call started after the deadline passed fails at once with ConnectTimeout."""
        with total_deadline(0):
            with pytest.raises(requests.exceptions.ConnectTimeout, match="passed while connecting"):
                session.get(trickling.url("/fast"))

    def test_a_timeout_below_the_deadline_still_applies(self, trickling, session):
        """The caller's own shorter read timeout still ends a silent call first, as requests' own timeout."""
        with total_deadline(5):
            error, elapsed = _timed(lambda: session.get(trickling.url("/silent"), timeout=(1, 0.3)))
        assert isinstance(error, requests.exceptions.ReadTimeout) and "total deadline" not in str(error)
        assert elapsed < 1.5


    def test_pools_direct_and_through_a_proxy_use_watched_connections(self):
        """The adapter's pools, direct and through a proxy, open connections the deadline can watch."""
        adapter = DeadlineAdapter()
        for manager in (adapter.poolmanager, adapter.proxy_manager_for("http://127.0.0.1:9")):
            for scheme in ("http", "https"):
                pool = manager.connection_from_host("127.0.0.1", 1, scheme=scheme)
                assert issubclass(pool.ConnectionCls, deadline_requests._WatchedConnection)


@pytest.fixture
def slow_reader():
    """A server on 127.0.0.1 that reads what it is sent 1 KB every 0.2 s (5 s at most), never answering."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def read_slowly(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for _ in range(25):
                try:
                    conn.recv(1024)
                except OSError:
                    return
                if stop.wait(0.2):
                    return

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=read_slowly, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/upload"
    stop.set()
    acceptor.join()
    listener.close()


UPLOAD = b"x" * (8 * 1024 * 1024)  # far more than the socket buffers hold: the writes must wait


class TestSlowReader:
    def test_httpx_upload_to_a_slow_reader_is_cut(self, slow_reader):
        """An 8 MB upload to a server reading 5 KB a second ends at the deadline with a WriteTimeout."""
        with httpx.Client(transport=deadline_transport(), timeout=30) as client:
            with total_deadline(DEADLINE):
                error, elapsed = _timed(lambda: client.post(slow_reader, content=UPLOAD))
        assert isinstance(error, httpx.WriteTimeout) and "sending the request" in str(error)
        assert elapsed < DEADLINE + MARGIN

    def test_requests_upload_to_a_slow_reader_is_cut(self, slow_reader, session):
        """The same upload through requests is cut at the deadline, and says it was sending."""
        with total_deadline(DEADLINE):
            error, elapsed = _timed(lambda: session.post(slow_reader, data=UPLOAD, timeout=30))
        assert isinstance(error, requests.exceptions.ReadTimeout) and "sending the request" in str(error)
        assert elapsed < DEADLINE + MARGIN


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate and key for 127.0.0.1, written to tmp_path; returns their paths."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_trickler(tmp_path):
    """An HTTPS server on 127.0.0.1 that answers every request with headers, then a body byte every 0.2 s (5 s at most)."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve_one(raw: socket.socket) -> None:
        try:
            with context.wrap_socket(raw, server_side=True) as conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                for _ in range(25):
                    conn.sendall(b"<")
                    if stop.wait(0.2):
                        return
        except OSError:
            pass  # the client hung up: that is the point

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve_one, args=(raw,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}/", cert
    stop.set()
    acceptor.join()  # before closing the listener it may be accepting on
    listener.close()


class TestTLS:
    def test_httpx_over_tls_is_cut(self, tls_trickler):
        """Over TLS, a trickled body is cut at the deadline through httpx."""
        url, cert = tls_trickler
        with httpx.Client(transport=deadline_transport(verify=ssl.create_default_context(cafile=cert)), timeout=30) as client:
            with total_deadline(DEADLINE):
                error, elapsed = _timed(lambda: client.get(url))
        assert isinstance(error, httpx.ReadTimeout) and "reading the response body" in str(error)
        assert elapsed < DEADLINE + MARGIN

    def test_requests_over_tls_is_cut(self, tls_trickler):
        """Over TLS, a trickled body is cut at the deadline through requests, by shutting the TLS socket down."""
        url, cert = tls_trickler
        with requests.Session() as session:
            session.mount("https://", DeadlineAdapter())
            with total_deadline(DEADLINE):
                error, elapsed = _timed(lambda: session.get(url, verify=cert, timeout=30))
        assert isinstance(error, requests.exceptions.ReadTimeout) and "reading the response body" in str(error)
        assert elapsed < DEADLINE + MARGIN


class TestBlocks:
    def test_inner_block_ends_no_later_than_the_outer(self):
        """A nested block asking for longer than its outer block gets the outer's end."""
        with total_deadline(1) as outer:
            with total_deadline(60) as inner:
                assert inner.ends_at == outer.ends_at and current_deadline() is inner
            with total_deadline(0.1) as shorter:
                assert shorter.ends_at < outer.ends_at
            assert current_deadline() is outer
        assert current_deadline() is None

    def test_deadlines_are_per_thread(self):
        """Another thread's calls do not see this thread's deadline."""
        import threading

        seen = []
        with total_deadline(1):
            worker = threading.Thread(target=lambda: seen.append(current_deadline()))
            worker.start()
            worker.join()
        assert seen == [None]
