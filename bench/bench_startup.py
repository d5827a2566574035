"""Start-up of the commands an operator types: `bridge --help`, `status` and `check` on a settings.toml
of 1,000 sources and one target of each network kind (a dry run: no credentials, no network).

Run: .venv/bin/python bench/bench_startup.py [--sources N] [--runs N] [--root CHECKOUT]

For each command, the median over the runs of: its wall time and CPU time (user + system) in a
fresh interpreter, and the time `python -X importtime` attributes to imports (the sum of the
top-level modules' cumulative times). CPU time is the steadier figure on a busy machine.
`--root` measures another checkout of the bridge (an older commit, for a before/after).
Goal (issue 12): well under 0.5 s of imports for each.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("--help",), ("status",), ("check",))
KINDS = {
    "x": 'kind = "x"',
    "telegram": 'kind = "telegram"\nchat_id = "@kanal"',
    "mastodon": 'kind = "mastodon"\ninstance = "https://mastodon.example"',
    "bluesky": 'kind = "bluesky"\nhandle = "kemenpora.bsky.social"',
    "facebook": 'kind = "facebook"\npage_id = "123"',
    "whatsapp": 'kind = "whatsapp"\nphone_number_id = "1"\nmessage_template = "t"\nrecipients = ["62"]',
}


def write_settings(folder: Path, sources: int) -> Path:
    targets = ", ".join(f'"{kind}"' for kind in KINDS)
    lines = ["[bridge]", f'database = "sqlite:///{folder / "bridge.db"}"', "dry_run = true", ""]
    for kind, body in KINDS.items():
        lines += [f"[targets.{kind}]", body, ""]
    for n in range(sources):
        lines += ["[[sources]]", f'name = "source-{n}"', f'url = "http://127.0.0.1:9/feed-{n}.xml"',
                  'kind = "feed"', f"targets = [{targets}]", ""]
    path = folder / "settings.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def bridge(root: Path, settings: Path, *args: str, importtime: bool = False) -> subprocess.CompletedProcess:
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run([sys.executable, *flags, "-m", "bridge", "--config", str(settings), *args],
                          capture_output=True, text=True, cwd=root, timeout=120)


def import_seconds(stderr: str) -> float:
    """The sum of the top-level imports' cumulative microseconds (nested ones are indented)."""
    total = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  "):  # one space before a top-level name, more before nested ones
            total += int(cumulative)
    return total / 1e6


def create_database(root: Path, settings: Path) -> None:
    """The database as `bridge run` leaves it, without reading a source (bridge.service has
    open_repository in every version of the bridge)."""
    script = ("import sys; from bridge.config import load_config; from bridge.service import open_repository; "
              "open_repository(load_config(__import__('pathlib').Path(sys.argv[1]))).engine.dispose()")
    subprocess.run([sys.executable, "-c", script, str(settings)], check=True, cwd=root, timeout=120)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(root: Path, settings: Path, command: tuple[str, ...], runs: int) -> tuple[float, float, float]:
    walls, cpus, imports = [], [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), children_cpu()
        result = bridge(root, settings, *command)
        walls.append(time.perf_counter() - start)
        cpus.append(children_cpu() - cpu)
        if result.returncode != 0:
            raise SystemExit(f"bridge {' '.join(command)} failed: {result.stderr.strip()[-300:]}")
        imports.append(import_seconds(bridge(root, settings, *command, importtime=True).stderr))
    return statistics.median(walls), statistics.median(cpus), statistics.median(imports)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        settings = write_settings(Path(folder), args.sources)
        create_database(args.root, settings)
        for command in COMMANDS:
            wall, cpu, imports = measure(args.root, settings, command, args.runs)
            print(f"bridge {' '.join(command):<8} {args.sources} sources: imports {imports:.3f} s, "
                  f"wall {wall:.3f} s, CPU {cpu:.3f} s (goal: imports well under 0.5 s)")


if __name__ == "__main__":
    main()
