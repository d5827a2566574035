"""Make a feed body safe for feedparser before it parses: what its own code cannot bound.

- Entity declarations are removed: its lenient fallback expands them without a bound (a 76 KB
  feed reached ~1 GB).
- Character references to code points that cannot exist are replaced: its lenient parser crashes on them.
- The text of person elements (author, dc:creator, managingEditor, ...) is cut to MAX_PERSON_BYTES:
  its e-mail regex on them is quadratic and holds the GIL (a 96 KB <author> froze the whole daemon
  for 63 s; measured 2026-12-02: 100 KB of letters took 73.5 s, 1 MB did not end in 400 s (about
  two hours by the curve), against 0.02 s for either once cut).
- A start tag keeps at most MAX_ATTRIBUTES attributes: the SAX lookup feedparser does per attribute
  is linear, so a tag of 50,000 attributes (400 KB) took 40 s; 0.2 s once cut.
"""

from __future__ import annotations

import re

try:  # the same decoding feedparser applies, so we inspect exactly the text it will parse
    from feedparser.encodings import convert_to_utf8 as _convert_to_utf8
except ImportError:  # pragma: no cover - a future feedparser; byte-level checks still apply
    _convert_to_utf8 = None

MAX_PERSON_BYTES = 1_024
"""A person element (author, dc:creator, ...) whose content is longer is cut to this much of its
text before feedparser parses: no name or address is longer, and its regex on them takes time
quadratic in their length."""

# Any entity declaration, wherever it hides (feedparser only strips those before the first element).
# The quoted-string alternatives keep a ">" inside a value from ending the match early.
_ENTITY_DECL = re.compile(rb"""<!ENTITY(?:[^>"']|"[^"]*"|'[^']*')*>?""", re.IGNORECASE)
_ENTITY_REPLACEMENT = b"<?entity-declaration-removed?>"  # a PI: legal in a DTD, inert elsewhere

# Elements whose text feedparser runs its e-mail regex on (_sync_author_detail: author,
# managingEditor, webMaster, dc:author, dc:creator, dc:publisher, itunes:author, ...) or keeps as
# a person's name or address (name, email, contributor), under any namespace prefix. `[^<>]*`
# stops at the next tag, so no opener can make this scan quadratic. Group 1: the name as written.
_PERSON_OPEN = re.compile(
    rb"<((?:[A-Za-z_][\w.-]*:)?(?:author|creator|contributor|publisher|managingeditor|webmaster|owner|name|email))"
    rb"(?:\s[^<>]*)?>",
    re.IGNORECASE,
)
_CDATA_OPEN, _CDATA_CLOSE = b"<![CDATA[", b"]]>"

MAX_ATTRIBUTES = 64
"""A start tag with more attributes keeps its first 64 (and every xmlns): the SAX attribute lookup
feedparser does per attribute is linear, so one tag's cost is quadratic in their number (12,500
attributes in 100 KB took 2.4 s, 50,000 in 400 KB 40 s). Real tags have a dozen at most."""
# "<" then more "=" than MAX_ATTRIBUTES before the next "<". [^<=] and "=" cannot overlap, so no backtracking.
_MANY_EQUALS = re.compile(rb"<(?:[^<=]*=){%d}" % (MAX_ATTRIBUTES + 1))
# A well-formed start tag; values cannot hold "<" (XML forbids it), so no match runs past the next tag.
_ATTR = rb"""\s+[^\s=<>/"']+\s*=\s*(?:"[^"<]*"|'[^'<]*')"""
_START_TAG = re.compile(rb"<([A-Za-z_][^\s<>/=]*)((?:" + _ATTR + rb")*)(\s*/?)>")
_ATTRIBUTE = re.compile(rb"""(\s+([^\s=<>/"']+)\s*=\s*(?:"[^"<]*"|'[^'<]*'))""")


def defuse(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """`body` made safe for feedparser, and the headers to parse it with.

    Remove every <!ENTITY declaration so neither parser can expand one, and replace character
    references to code points that cannot exist (&#xD800;, &#0;) with U+FFFD: feedparser's lenient
    parser crashes on them and would lose the whole feed over one character. Cut the text of
    person elements to MAX_PERSON_BYTES (see _cap_people), and start tags to MAX_ATTRIBUTES.

    Checked on the text feedparser will actually see (after its own decoding), because a
    declaration in UTF-16, UTF-7 or EBCDIC is invisible to a byte search on the raw body.
    """
    if _convert_to_utf8 is None:
        return _clean(body), headers
    try:
        seen = _convert_to_utf8(dict(headers), body, {})
    except Exception:  # an odd codec raising something unexpected: fall back to the raw bytes
        seen = body
    cleaned = _clean(seen)
    if cleaned == seen:
        return body, headers
    # Hand feedparser the UTF-8 text we cleaned, labelled as such so it does not decode it again.
    return cleaned, {**headers, "content-type": "application/xml; charset=utf-8"}


_BAD_CHARREF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,16})|([0-9]{1,20}));")


def _clean(text: bytes) -> bytes:
    text = _BAD_CHARREF.sub(_fix_charref, _ENTITY_DECL.sub(_ENTITY_REPLACEMENT, text))
    return _cap_attributes(_cap_people(text))


def _cap_attributes(body: bytes) -> bytes:
    """`body` with every start tag that has more than MAX_ATTRIBUTES attributes cut to its first
    MAX_ATTRIBUTES (namespace declarations always kept). A linear pre-scan finds the candidates:
    a "<" followed by more "=" than that before the next "<"."""
    parts: list[bytes] = []
    pos = done = 0
    while candidate := _MANY_EQUALS.search(body, pos):
        tag = _START_TAG.match(body, candidate.start())
        pos = candidate.start() + 1 if tag is None else tag.end()
        if tag is None:
            continue  # not a well-formed start tag (its "=" are text, or unquoted values): left as is
        attributes = _ATTRIBUTE.findall(tag[2])  # (as written, name) pairs
        if len(attributes) <= MAX_ATTRIBUTES:
            continue
        namespaces = [raw for raw, name in attributes if _is_namespace(name)]
        others = [raw for raw, name in attributes if not _is_namespace(name)][:MAX_ATTRIBUTES]
        parts += [body[done:tag.start()], b"<" + tag[1] + b"".join(namespaces + others) + tag[3] + b">"]
        done = tag.end()
    return b"".join(parts) + body[done:] if parts else body


def _is_namespace(name: bytes) -> bool:
    return name == b"xmlns" or name.startswith(b"xmlns:")  # dropping one would unbind a prefix


def _cap_people(body: bytes) -> bytes:
    """`body` with each person element whose content is over MAX_PERSON_BYTES rewritten as its
    first MAX_PERSON_BYTES of character data (see _flatten). One pass, linear in the body."""
    lower = body.lower()  # the loose parser matches names in any case; ASCII lower() keeps offsets
    parts: list[bytes] = []
    pos = done = 0
    unclosed: set[bytes] = set()  # names with no end tag after some point: none after any later one
    while match := _PERSON_OPEN.search(body, pos):
        start = pos = match.end()
        if match[0].endswith(b"/>"):
            continue  # <author/>: the text after it is not its own
        name = match[1].lower()
        end = -1 if name in unclosed else _end_tag(lower, name, start)
        if end < 0:
            # Malformed: no end tag. Cap its first run of text at least (the lenient parser reads it).
            unclosed.add(name)
            end = body.find(b"<", start)
            end = len(body) if end < 0 else end
        pos = max(pos, end)
        if end - start > MAX_PERSON_BYTES:
            parts += [body[done:start], _flatten(body, start, end)]
            done = end
    return b"".join(parts) + body[done:] if parts else body


def _end_tag(lower: bytes, name: bytes, start: int) -> int:
    """Where `</name>` (or `</name >`) first begins at or after `start`, or -1."""
    closer = b"</" + name
    at = lower.find(closer, start)
    while at >= 0 and lower[at + len(closer):at + len(closer) + 1] not in (b">", b" ", b"\t", b"\r", b"\n"):
        at = lower.find(closer, at + len(closer))  # </authorship> is not </author>
    return at


def _flatten(body: bytes, start: int, end: int) -> bytes:
    """The character data of body[start:end] (text as written, CDATA escaped), without its markup,
    cut to MAX_PERSON_BYTES. Child elements, comments and CDATA sections could otherwise split
    a long text into short runs that each pass under a per-run cap, while feedparser's regex
    still sees their concatenation. Each find is bounded by `end` and advances: linear."""
    pieces: list[bytes] = []
    size, pos = 0, start
    while pos < end and size <= MAX_PERSON_BYTES:
        lt = body.find(b"<", pos, end)
        text = body[pos:end if lt < 0 else lt]
        pieces.append(text)
        size += len(text)
        if lt < 0:
            break
        if body.startswith(_CDATA_OPEN, lt):
            close = body.find(_CDATA_CLOSE, lt, end)
            data = body[lt + len(_CDATA_OPEN):end if close < 0 else close]
            data = data.replace(b"&", b"&amp;").replace(b"<", b"&lt;").replace(b">", b"&gt;")
            pieces.append(data)
            size += len(data)
            pos = end if close < 0 else close + len(_CDATA_CLOSE)
        else:
            terminator = b"-->" if body.startswith(b"<!--", lt) else b"?>" if body.startswith(b"<?", lt) else b">"
            close = body.find(terminator, lt + 1, end)
            pos = end if close < 0 else close + len(terminator)
    return _safe_cut(b"".join(pieces)[:MAX_PERSON_BYTES])


def _safe_cut(text: bytes) -> bytes:
    # Never end inside a UTF-8 character or an entity reference ("&am"): either would make the
    # document malformed, sending feedparser to its slower lenient parser.
    while text and 0x80 <= text[-1] <= 0xBF:
        text = text[:-1]
    if text and text[-1] >= 0xC0:
        text = text[:-1]  # a lead byte whose continuation was cut off
    amp = text.rfind(b"&")
    if amp >= 0 and b";" not in text[amp:]:
        text = text[:amp]
    return text


def _fix_charref(match: re.Match) -> bytes:
    code = int(match[1], 16) if match[1] else int(match[2])
    if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return b"&#xFFFD;"
    return match[0]
