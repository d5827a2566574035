"""docs/networks.md stays honest where that is cheap to check: every network has its section, each
section states its module's length limit and photo limit, and every error code the modules map is
on the page (in its network's section for the network's own codes)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from bridge.publish import NETWORK_MODULES, _graph, facebook, telegram, whatsapp, x

PAGE = Path(__file__).resolve().parent.parent / "docs" / "networks.md"


def _sections() -> dict[str, str]:
    """The page's "## " sections by heading."""
    text = PAGE.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


def _section(kind: str) -> str:
    found = [body for heading, body in _sections().items() if f"(`{kind}`)" in heading]
    assert len(found) == 1, f"docs/networks.md needs one section headed '... (`{kind}`)'"
    return found[0]


def _has_number(text: str, number: int) -> bool:
    """The number as written, plainly or with thousands separators, not as part of a longer one."""
    forms = {str(number), f"{number:,}"}
    return any(re.search(rf"(?<!\d)(?<!\d[,.]){re.escape(form)}(?!\d|[,.]\d)", text) for form in forms)


@pytest.mark.parametrize("kind", sorted(NETWORK_MODULES))
def test_each_network_has_a_section_with_its_limits(kind):
    module = importlib.import_module(NETWORK_MODULES[kind])
    section = _section(kind)
    assert _has_number(section, module.LENGTH_RULE.max_length), f"{kind}: length limit not in its section"
    assert _has_number(section, module.MAX_IMAGE_BYTES), f"{kind}: MAX_IMAGE_BYTES not in its section"
    photo_rule = getattr(module, "PHOTO_LENGTH_RULE", None)
    if photo_rule is not None:
        assert _has_number(section, photo_rule.max_length), f"{kind}: photo length limit not in its section"


def _codes(*values) -> set[int]:
    found: set[int] = set()
    for value in values:
        found |= set(value) if isinstance(value, (set, frozenset, tuple, list)) else {value}
    return found


def test_every_graph_code_is_on_the_page():
    page = PAGE.read_text(encoding="utf-8")
    permissions = _graph.PERMISSION_CODES - set(range(200, 300))
    assert "200-299" in page
    for code in _codes(_graph.TOKEN_INVALID, _graph.SESSION_INVALID, permissions, _graph.THROTTLING_CODES,
                       _graph.TRANSIENT_CODES, _graph.POLICY_BLOCK):
        assert _has_number(page, code), f"Graph code {code} is not on docs/networks.md"


def test_each_networks_own_codes_are_in_its_section():
    own = {
        "x": _codes(x._DUPLICATE_CODE, x._NOT_ENROLLED_CODE),
        "facebook": _codes(facebook.DUPLICATE_POST, facebook.INVALID_PARAMETER, facebook.UNKNOWN_OBJECT),
        "whatsapp": _codes(whatsapp.THROTTLING, whatsapp.PAIR_RATE_LIMIT, whatsapp.RECIPIENT_PROBLEMS,
                           whatsapp.MESSAGE_PROBLEMS, whatsapp.TEMPLATE_PROBLEMS, whatsapp.ACCOUNT_PROBLEMS,
                           whatsapp.ACCESS_DENIED, whatsapp.NUMBER_DELETED),
    }
    for kind, codes in own.items():
        section = _section(kind)
        missing = sorted(code for code in codes if not _has_number(section, code))
        assert not missing, f"{kind}: codes {missing} are mapped in the module but not in its section"


def test_telegrams_missing_rights_phrases_are_in_its_section():
    section = _section("telegram")
    missing = [phrase for phrase in telegram.MISSING_RIGHTS + telegram.PHOTO_RIGHTS if phrase not in section]
    assert not missing, f"telegram: MISSING_RIGHTS phrases {missing} are not in its section"


def test_the_readme_links_the_page():
    readme = (PAGE.parent.parent / "README.md").read_text(encoding="utf-8")
    assert "docs/networks.md" in readme
