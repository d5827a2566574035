"""The benchmark script keeps working as the code changes (its numbers are read by people, not here)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_pipeline.py"
BENCH_STORE = BENCH.with_name("bench_store.py")


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_runs(capsys, monkeypatch):
    """bench/bench_pipeline.py runs to the end and prints one line per measurement."""
    spec = importlib.util.spec_from_file_location("bench_pipeline", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "RUNS", 1)
    bench.main()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and all(line.split()[-1] in ("ms", "MiB") for line in lines)


def test_bench_store_runs(capsys, monkeypatch):
    """bench/bench_store.py generates its stores and prints every figure with its goal (tiny sizes)."""
    bench = load(BENCH_STORE)
    monkeypatch.setattr(bench, "RUNS", 1)
    results = bench.main([], sizes=(200, 400))
    out = capsys.readouterr().out
    assert set(results) == {200, 400}
    for size in ("200", "400"):
        figures = [line for line in out.splitlines() if line.strip().startswith(f"{size}:")]
        assert sum("goal" in line for line in figures) == 6  # poll ratio, status x2, metrics, prune batch, probe wait
        assert any("prune" in line for line in figures) and any("/metrics" in line for line in figures)
    assert results[400]["pruned"] > 0  # two years of stories: the first year's are older than keep


CYCLE = Path(__file__).resolve().parents[1] / "bench" / "bench_cycle.py"
CYCLE_FIGURES = (
    "cold cycle, 5 new feeds: bridge run --once", "cold cycle, 5 new feeds: naive loop",
    "cold cycle, 5 new feeds: floor", "cold cycle: bridge / floor", "cold cycle: naive / bridge",
    "cold cycle, 5 feeds, 200 ms origin: bridge", "warm cycle, 5 sources all 304: daemon CPU",
    "warm cycle: naive loop CPU / daemon CPU", "daemon RSS, 5 sources, after a full cycle",
    "story to post on X, 3 stories: p50", "story to post on X, 3 stories: p99",
)


def test_bench_cycle_runs(capsys, monkeypatch):
    """bench/bench_cycle.py runs every figure end to end at tiny sizes (5 sources, 3 stories, the
    Python origin, as CI has no nginx) and prints each with a number; its speed is not judged here."""
    spec = importlib.util.spec_from_file_location("bench_cycle", CYCLE)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_cycle", bench)  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    bench.main(["--sources", "5", "--stories", "3", "--origin", "python", "--interval", "2s"])
    lines = capsys.readouterr().out.splitlines()
    for name in CYCLE_FIGURES:
        line = next((line for line in lines if line.startswith(name + " ")), None)
        assert line is not None, f"{name!r} not printed:\n" + "\n".join(lines)
        float(line[len(name):].split()[0])  # a number beside it
    assert "never reached X" not in "\n".join(lines)


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


def test_replica_bench_runs(capsys, postgres_url):
    """bench/bench_replicas.py runs 1 and 2 replicas on one PostgreSQL at a tiny size, prints each
    figure, and no story reached a network twice (its speed is not judged here)."""
    bench = load(BENCH.with_name("bench_replicas.py"))
    server = postgres_url.split("?")[0].rsplit("/", 1)[0]
    results = bench.main(["--quick", "--replicas", "1,2", "--window", "2", "--warmup", "1", "--postgres", server,
                          "--database", f"bench_replicas_test_{os.getpid()}"])
    assert [r["replicas"] for r in results] == [1, 2]
    assert all(r["per_minute"] > 0 and r["doubled"] == 0 for r in results)
    out = capsys.readouterr().out
    assert "2 replica(s):" in out and "goal >= x1.8" in out
