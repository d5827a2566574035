"""Hostile input: every file of the shared corpora through parse_feed and into the store, some
through fetch too.

The corpora are feedparser 6.0.14's test feeds and the W3C Feed Validator's test cases (see
../shared/corpora/README.md). Their "Expect:" comments are Python for feedparser's own runner and
are never evaluated here; only the plain "Header: Name: value" lines are read, as HTTP headers.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.errors import FeedParseError
from bridge.model import Item
from bridge.sources.feed import parse_feed
from bridge.sources.fetch import FetchLimits, fetch, make_client
from bridge.store.db import create_database_engine
from bridge.store.migrations import migrate
from bridge.store.repo import Repository
from tests.fakes.feed_server import FeedServer

FEED_URL = "http://127.0.0.1/corpus/feed.xml"
SECONDS_PER_FILE = 5.0  # generous: the whole corpus takes a few seconds; this catches a hang
_HEADER_LINE = re.compile(rb"^\s*Header:\s*([A-Za-z-]+):\s*(.*?)\s*$", re.MULTILINE)


def _corpora_root() -> Path | None:
    configured = os.environ.get("BRIDGE_CORPORA")
    root = Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "corpora"
    return root if root.is_dir() else None


ROOT = _corpora_root()
FILES = sorted(p for p in ROOT.rglob("*") if p.is_file()) if ROOT else []
HTTP_FILES = [p for p in FILES if p.parent.name == "encoding" and p.name.startswith(("http_", "bozo_http"))]


def _params(files: list[Path]):
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason="corpora not found (set BRIDGE_CORPORA)"))]
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in files]


def _declared_headers(body: bytes) -> dict[str, str]:
    # Only the comment at the top of the file; "Header:" further down would be feed content.
    return {name.decode("ascii").lower(): value.decode("latin-1") for name, value in _HEADER_LINE.findall(body[:2048])}


def _check_items(items: list) -> None:
    assert isinstance(items, list)
    for item in items:
        assert isinstance(item, Item)
        assert isinstance(item.key, str) and item.key
        assert isinstance(item.title, str) and isinstance(item.summary, str)
        assert item.link is None or item.link.startswith(("http://", "https://"))
        assert item.image_url is None or item.image_url.startswith(("http://", "https://"))
        assert item.published is None or item.published.tzinfo == timezone.utc
        assert all(isinstance(c, str) and c for c in item.categories)


@pytest.fixture(scope="module")
def corpus_repo(tmp_path_factory):
    engine = create_database_engine(f"sqlite:///{tmp_path_factory.mktemp('corpora')}/bridge.db")
    migrate(engine)
    yield Repository(engine)
    engine.dispose()


@pytest.mark.parametrize("path", _params(FILES))
def test_corpus_file_parses_or_is_rejected(path: Path, corpus_repo: Repository):
    """Each corpus file gives valid Items that the store accepts (twice, the second time adding
    nothing), or a FeedParseError; never another exception or a hang."""
    body = path.read_bytes()
    start = time.monotonic()
    try:
        items = parse_feed(body, url=FEED_URL, headers=_declared_headers(body))
    except FeedParseError as error:
        assert error.reason
        return
    _check_items(items)
    source = str(path.relative_to(ROOT))
    now = datetime.now(timezone.utc)
    for expected_new in (len({i.key for i in items}), 0):
        stored = corpus_repo.store_poll(source, FEED_URL, items, ["x"], now=now, skip={}, etag=None,
                                        last_modified=None, next_poll_at=None)
        assert stored.new_items == expected_new
    assert time.monotonic() - start < SECONDS_PER_FILE


@pytest.fixture(scope="module")
def corpus_server():
    with FeedServer() as server:
        yield server


@pytest.mark.parametrize("path", _params(HTTP_FILES))
def test_encoding_cases_through_fetch(path: Path, corpus_server: FeedServer):
    """feedparser's HTTP encoding cases, served with their Content-Type, go through fetch and parse_feed."""
    body = path.read_bytes()
    headers = _declared_headers(body)
    content_type = headers.pop("content-type", "application/octet-stream")
    route = "/" + path.name
    corpus_server.add(route, body, content_type=content_type, headers={k.title(): v for k, v in headers.items()})
    limits = FetchLimits(total_timeout=5)
    with make_client(limits) as client:
        result = fetch(client, corpus_server.url(route), limits)
    try:
        items = parse_feed(result.body, url=result.url, headers=result.headers)
    except FeedParseError as error:
        assert error.reason
    else:
        _check_items(items)


def test_corpora_located_by_env(tmp_path, monkeypatch):
    """BRIDGE_CORPORA overrides the default location, and a missing folder means "skip", not "fail"."""
    monkeypatch.setenv("BRIDGE_CORPORA", str(tmp_path))
    assert _corpora_root() == tmp_path
    monkeypatch.setenv("BRIDGE_CORPORA", str(tmp_path / "missing"))
    assert _corpora_root() is None
