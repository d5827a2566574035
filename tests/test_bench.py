"""The benchmark script keeps working as the code changes (its numbers are read by people, not here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_pipeline.py"


def test_bench_runs(capsys, monkeypatch):
    """bench/bench_pipeline.py runs to the end and prints one line per measurement."""
    spec = importlib.util.spec_from_file_location("bench_pipeline", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "RUNS", 1)
    bench.main()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and all(line.split()[-1] in ("ms", "MiB") for line in lines)


def test_dashboard_bench_runs(capsys, monkeypatch):
    """bench/bench_dashboard.py runs to the end at a tiny size and prints the page's timings."""
    path = BENCH.parent / "bench_dashboard.py"
    spec = importlib.util.spec_from_file_location("bench_dashboard", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "RUNS", 1)
    monkeypatch.setattr("sys.argv", ["bench_dashboard.py", "500"])
    bench.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("filled 500 stories") and [line.split()[0] for line in lines[1:]] == \
        ["overview", "of", "story"]
