"""The benchmark script keeps working as the code changes (its numbers are read by people, not here)."""

from __future__ import annotations

import importlib.util
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
        assert sum("goal" in line for line in figures) == 5  # poll ratio, status x2, metrics, prune batch
        assert any("prune" in line for line in figures) and any("/metrics" in line for line in figures)
    assert results[400]["pruned"] > 0  # two years of stories: the first year's are older than keep
