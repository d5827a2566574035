"""The README's journalctl recipes, run on `journalctl -o cat` output as systemd gives it: its own
plain lines ("Started bridge.service", "Main process exited") mixed with the bridge's JSON lines.

The plain lines in tests/fixtures/journal/systemd-lines.txt are systemd 252's (Debian 12) messages
for this unit; the JSON lines are made here by the bridge's own logging setup. Needs jq; skipped
where it is not installed."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import structlog

from bridge import logs

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SYSTEMD_LINES = (ROOT / "tests/fixtures/journal/systemd-lines.txt").read_text(encoding="utf-8").splitlines()
JQ = shutil.which("jq")
needs_jq = pytest.mark.skipif(JQ is None, reason="jq is not installed")


def _journal_cat() -> tuple[str, list[dict]]:
    """systemd's plain lines with the bridge's JSON lines between them, as `journalctl -o cat` prints."""
    stream = io.StringIO()
    logs.configure_logging("debug", json=True, stream=stream)
    log = structlog.get_logger("bridge")
    ours = []
    for index, plain in enumerate(SYSTEMD_LINES):
        ours.append(plain)
        if index % 2 == 0:
            before = len(stream.getvalue())
            if index % 4 == 0:
                log.error("post failed", source="antara-terkini", target="x", reason="HTTP 503")
            elif index % 8 == 2:
                log.info("polls summary", polled=1000, unchanged=990, failed=2, new=8, queued=8, failing=1,
                         period_s=900)
            else:
                log.info("polled", source="kominfo", outcome="ok", duration_ms=120, new=1)
            ours.append(stream.getvalue()[before:].rstrip("\n"))
    events = [json.loads(line) for line in ours if line.startswith("{")]
    return "\n".join(ours) + "\n", events


def _readme_jq_programs() -> list[str]:
    """Every `journalctl ... | jq -cR '...'` recipe in the README ("\\|" in a table cell is a "|")."""
    text = README.replace("\\|", "|")
    return re.findall(r"journalctl -u bridge -o cat \| jq -cR '([^']+)'", text)


def test_the_readme_has_field_recipes_and_no_plain_jq_one():
    """The README shows jq recipes that skip plain lines, and none that parse every line as JSON."""
    assert len(_readme_jq_programs()) >= 2
    assert not re.search(r"\| jq (-c )?'select", README.replace("\\|", "|"))
    assert "journalctl -u bridge -o cat -p warning" in README


@needs_jq
def test_each_readme_jq_recipe_works_on_mixed_journal_output():
    """Each documented jq program exits 0 on systemd's plain lines and picks exactly the JSON events it names."""
    text, events = _journal_cat()
    for program in _readme_jq_programs():
        run = subprocess.run([JQ, "-cR", program], input=text, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, (program, run.stderr)
        got = [json.loads(line) for line in run.stdout.splitlines()]
        field, value = re.search(r'select\(\.(\w+)=="([^"]+)"\)', program).groups()
        assert got == [e for e in events if e.get(field) == value] and got, program


@needs_jq
def test_the_old_plain_jq_recipe_fails_on_the_same_output():
    """`jq 'select(...)'` without -R/fromjson? stops with a parse error at systemd's first line (why the recipe changed)."""
    text, _ = _journal_cat()
    run = subprocess.run([JQ, "-c", 'select(.level=="error")'], input=text, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode != 0 and "parse error" in run.stderr
