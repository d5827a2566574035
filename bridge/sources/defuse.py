"""Make a feed body safe for feedparser before it parses: what its own code cannot bound.

- Entity declarations are removed: its lenient fallback expands them without a bound (a 76 KB
  feed reached ~1 GB).
- Character references to code points that cannot exist are replaced: its lenient parser crashes on them.
- The text of person elements (author, dc:creator, managingEditor, ...) is cut to MAX_PERSON_BYTES:
  its e-mail regex on them is quadratic and holds the GIL (a 96 KB <author> froze the whole daemon
  for 63 s; measured 2026-12-02: 100 KB of letters took 73.5 s, 1 MB did not end in 400 s (about
  two hours by the curve), against 0.02 s for either once cut).
"""

from __future__ import annotations

import re

try:  # the same decoding feedparser applies, so we inspect exactly the text it will parse
    from feedparser.encodings import convert_to_utf8 as _convert_to_utf8
except ImportError:  # pragma: no cover - a future feedparser; byte-level checks still apply
    _convert_to_utf8 = None

MAX_PERSON_BYTES = 1_024
"""Text of a person element (author, dc:creator, ...) beyond this is cut before feedparser parses:
no name or address is longer, and its regex on them takes time quadratic in their length."""

# Any entity declaration, wherever it hides (feedparser only strips those before the first element).
# The quoted-string alternatives keep a ">" inside a value from ending the match early.
_ENTITY_DECL = re.compile(rb"""<!ENTITY(?:[^>"']|"[^"]*"|'[^']*')*>?""", re.IGNORECASE)
_ENTITY_REPLACEMENT = b"<?entity-declaration-removed?>"  # a PI: legal in a DTD, inert elsewhere

# Elements whose text feedparser runs its e-mail regex on (_sync_author_detail: author,
# managingEditor, webMaster, dc:author, dc:creator, dc:publisher, itunes:author, ...) or keeps as
# a person's name or address (name, email, contributor), under any namespace prefix. `[^<>]*`
# stops at the next tag, so no opener can make this scan quadratic.
_PERSON_OPEN = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?(?:author|creator|contributor|publisher|managingeditor|webmaster|owner|name|email)"
    rb"(?:\s[^<>]*)?>",
    re.IGNORECASE,
)
_CDATA_OPEN, _CDATA_CLOSE = b"<![CDATA[", b"]]>"


def defuse(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """`body` made safe for feedparser, and the headers to parse it with.

    Remove every <!ENTITY declaration so neither parser can expand one, and replace character
    references to code points that cannot exist (&#xD800;, &#0;) with U+FFFD: feedparser's lenient
    parser crashes on them and would lose the whole feed over one character. Cut the text of
    person elements to MAX_PERSON_BYTES (see _cap_people).

    Checked on the text feedparser will actually see (after its own decoding), because a
    declaration in UTF-16, UTF-7 or EBCDIC is invisible to a byte search on the raw body.
    """
    if _convert_to_utf8 is None:
        return _cap_people(_BAD_CHARREF.sub(_fix_charref, _ENTITY_DECL.sub(_ENTITY_REPLACEMENT, body))), headers
    try:
        seen = _convert_to_utf8(dict(headers), body, {})
    except Exception:  # an odd codec raising something unexpected: fall back to the raw bytes
        seen = body
    cleaned = _cap_people(_BAD_CHARREF.sub(_fix_charref, _ENTITY_DECL.sub(_ENTITY_REPLACEMENT, seen)))
    if cleaned == seen:
        return body, headers
    # Hand feedparser the UTF-8 text we cleaned, labelled as such so it does not decode it again.
    return cleaned, {**headers, "content-type": "application/xml; charset=utf-8"}


_BAD_CHARREF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,16})|([0-9]{1,20}));")


def _cap_people(body: bytes) -> bytes:
    """`body` with the text (or CDATA) right after each person element's start tag cut to
    MAX_PERSON_BYTES. One pass, linear in the body: each span is scanned once."""
    parts: list[bytes] = []
    pos = done = 0
    cdata_closes = True  # False once a CDATA section was found unclosed: later ones are too
    while match := _PERSON_OPEN.search(body, pos):
        start = pos = match.end()
        if match[0].endswith(b"/>"):
            continue  # <author/>: the text after it is not its own
        if body.startswith(_CDATA_OPEN, start):
            end = body.find(_CDATA_CLOSE, start + len(_CDATA_OPEN)) if cdata_closes else -1
            if end < 0:
                cdata_closes = False
                continue
            start, pos = start + len(_CDATA_OPEN), end + len(_CDATA_CLOSE)
        else:
            end = body.find(b"<", start)
            end = len(body) if end < 0 else end
            pos = end
        if end - start > MAX_PERSON_BYTES:
            parts += [body[done:start], _safe_cut(body[start:start + MAX_PERSON_BYTES])]
            done = end
    return b"".join(parts) + body[done:] if parts else body


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
