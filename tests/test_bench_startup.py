"""bench/bench_startup.py keeps working as the code changes (its numbers are read by people, not here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_startup.py"


def test_startup_bench_runs(capsys):
    """The start-up benchmark runs to the end on a tiny config and prints one line per command."""
    spec = importlib.util.spec_from_file_location("bench_startup", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--sources", "3", "--runs", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["--help", "status", "check"]
    assert all("imports" in line and "wall" in line for line in lines)
