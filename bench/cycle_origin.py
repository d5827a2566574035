"""The local origin of the poll-cycle benchmark (bench/bench_cycle.py): generated Indonesian-style
feeds in a folder, served over HTTP on 127.0.0.1 by nginx (Debian's package, where installed) or by
the small keep-alive Python server below, which can also answer each request after a delay (real
sites are far away). Both send ETag and Last-Modified and answer conditional GETs with 304, and
both count what they answered, which is how the benchmark finds a poll cycle's end.

Run as a script it is the Python server: `python bench/cycle_origin.py ROOT [--delay S]` prints
its port, then serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from email.utils import formatdate
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import WIB, antara_feed  # noqa: E402

SITE_SUFFIX = ".feeds.test"
"""Host names that bench/localnames/sitecustomize.py resolves to 127.0.0.1."""
COUNT_PATH = "/_requests"
"""The Python origin answers this with "ANSWERED NOT_MODIFIED MISSING" (not counted itself)."""
PARAGRAPH = ("Menteri Pemuda dan Olahraga menyampaikan bahwa pembinaan atlet muda di daerah harus "
             "berjalan beriringan dengan <strong>pembangunan fasilitas</strong> dan kompetisi yang teratur. "
             "Menurut dia, <a href=\"https://www.antaranews.com/tag/olahraga\">prestasi nasional</a> lahir "
             "dari kerja bersama pemerintah pusat, daerah, dan federasi cabang olahraga.")


def site(index: int) -> str:
    return f"s{index:05d}"


def feed_url(index: int, port: int) -> str:
    return f"http://{site(index)}{SITE_SUFFIX}:{port}/{site(index)}.xml"


def story(feed: int, n: int, *, title: str | None = None, published: datetime | None = None,
          paragraphs: int = 2) -> dict:
    """One story shaped like Antara's (tests/helpers.py), with a link no other feed has and a
    description long enough that 50 of them make a ~60 KB feed. No image: nothing to download."""
    link_id = 5_000_000 + feed * 1_000 + n
    return {
        "title": title or f"Menpora dorong atlet muda berprestasi di daerah {feed}, berita nomor {n}",
        "link": f"https://www.antaranews.com/berita/{link_id}/menpora-dorong-atlet-muda-{feed}-{n}",
        "published": published or datetime(2026, 11, 26, 8, 0, tzinfo=WIB) - timedelta(minutes=37 * n),
        "description": "Jakarta (ANTARA) - " + " ".join(f"<p>{PARAGRAPH}</p>" for _ in range(paragraphs))
                       + f" Cerita ke-{n}&nbsp;…",
        "categories": ("Olahraga", "Pemuda"),
    }


def write_feed(root: Path, index: int, items: list[dict], *, mtime: float | None = None) -> None:
    """Replace a feed at once (readers never see half a file); `mtime` makes each version's ETag new
    even within one second (nginx's ETag is mtime and size)."""
    path = root / f"{site(index)}.xml"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(antara_feed(items), encoding="utf-8")
    if mtime is not None:
        os.utime(temporary, (mtime, mtime))
    temporary.chmod(0o644)
    os.replace(temporary, path)


def write_feeds(root: Path, count: int, *, items: int = 50, paragraphs: int = 2) -> None:
    for index in range(count):
        write_feed(root, index, [story(index, n, paragraphs=paragraphs) for n in range(items)])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PythonOrigin:
    """This file's server in its own process (so it never competes for the benchmark's GIL)."""

    name = "Python keep-alive server"

    def __init__(self, root: Path, delay: float = 0.0):
        self.process = subprocess.Popen([sys.executable, __file__, str(root), "--delay", str(delay)],
                                        stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())
        if delay:
            self.name += f", each answer after {delay * 1000:.0f} ms"

    def answered(self) -> tuple[int, int]:
        """(requests answered, of which 304) so far."""
        with socket.create_connection(("127.0.0.1", self.port)) as conn:
            conn.sendall(f"GET {COUNT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
        total, not_modified, missing = reply.split(b"\r\n\r\n", 1)[1].split()
        if int(missing):
            raise RuntimeError(f"the origin was asked for {int(missing)} file(s) it does not have")
        return int(total), int(not_modified)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


NGINX_CONF = """daemon off;
{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    log_format status '$status';
    access_log {dir}/access.log status;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    sendfile on;
    etag on;
    if_modified_since exact;
    types {{ application/rss+xml xml; }}
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        root {root};
    }}
}}
"""


class NginxOrigin:
    """nginx serving ROOT's files on a free 127.0.0.1 port, keep-alive on, its ETag/Last-Modified
    on (so 304s work), each answer's status logged to count them."""

    name = "nginx"

    def __init__(self, root: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = free_port()
        # Started by root, nginx's workers would run as nobody, who may not enter a private temp folder.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(NGINX_CONF.format(user=user, dir=self.dir, port=self.port, root=root))
        self.log = self.dir / "access.log"
        self.log.touch()
        self.process = subprocess.Popen(["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                                         "-e", str(self.dir / "error.log")])
        self._seen = (0, 0, 0)  # bytes read, answered, 304
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {(self.dir / 'error.log').read_text()[-500:]}")
                time.sleep(0.05)

    def answered(self) -> tuple[int, int]:
        offset, total, not_modified = self._seen
        with self.log.open("rb") as log:
            log.seek(offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        statuses = complete.split()
        total += len(statuses)
        not_modified += statuses.count(b"304")
        self._seen = (offset + len(complete), total, not_modified)
        if any(status not in (b"200", b"304") for status in statuses):
            raise RuntimeError(f"nginx answered {sorted(set(statuses))}: see {self.dir}/error.log")
        return total, not_modified

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_origin(kind: str, root: Path, delay: float = 0.0):
    """kind "auto": nginx where installed (and no delay is asked), else the Python server."""
    if kind == "nginx" or (kind == "auto" and not delay and shutil.which("nginx")):
        return NginxOrigin(root)
    return PythonOrigin(root, delay)


# --- The Python server -------------------------------------------------------------------------

class _Server:
    def __init__(self, root: Path, delay: float):
        self.root, self.delay = root, delay
        self.answered = self.not_modified = self.missing = 0

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self.request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to close."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, version = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if target == COUNT_PATH:
            await self.send(writer, 200, {}, f"{self.answered} {self.not_modified} {self.missing}".encode(), keep)
            return keep
        if self.delay:
            await asyncio.sleep(self.delay)
        path = self.root / os.path.basename(target.split("?", 1)[0])
        try:
            stat = path.stat()
            body = path.read_bytes()
        except OSError:
            await self.send(writer, 404, {}, b"not found\n", keep)
            self.answered += 1
            self.missing += 1
            return keep
        validators = {"ETag": f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
                      "Last-Modified": formatdate(stat.st_mtime, usegmt=True)}
        if "if-none-match" in headers:  # RFC 9110: it wins over If-Modified-Since
            fresh = validators["ETag"] in [tag.strip() for tag in headers["if-none-match"].split(",")]
        else:
            fresh = headers.get("if-modified-since") == validators["Last-Modified"]
        if fresh:
            await self.send(writer, 304, validators, b"", keep, length=False)
            self.not_modified += 1
        else:
            await self.send(writer, 200, {"Content-Type": "application/rss+xml; charset=utf-8", **validators},
                            b"" if method == "HEAD" else body, keep)
        self.answered += 1
        return keep

    async def send(self, writer, status: int, headers: dict, body: bytes, keep: bool, length: bool = True) -> None:
        reason = {200: "OK", 304: "Not Modified", 404: "Not Found"}[status]
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items()),
                 f"Connection: {'keep-alive' if keep else 'close'}"]
        if length:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()


async def _serve(root: Path, delay: float) -> None:
    server = _Server(root, delay)
    listener = await asyncio.start_server(server.connection, "127.0.0.1", 0, backlog=4096)
    print(listener.sockets[0].getsockname()[1], flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    arguments = parser.parse_args()
    asyncio.run(_serve(arguments.root, arguments.delay))
