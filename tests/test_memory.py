"""The daemon's heap (bridge/memory.py): arenas limited unless the operator says otherwise, freed
pages given back when the pipeline jobs go idle, at most every TRIM_SPACING_SECONDS. Memory figures
are measured in bench/bench_cycle.py (--only rss), not here."""

from __future__ import annotations

import subprocess
import sys

from bridge import memory
from tests.helpers import FakeMonotonic
from tests.test_daemon_process import REPO_ROOT


def make_trimmer(clock: FakeMonotonic) -> tuple[memory.Trimmer, list[float]]:
    released: list[float] = []
    return memory.Trimmer(spacing=2.0, monotonic=clock, release=lambda: released.append(clock.now)), released


def test_a_trim_when_the_jobs_in_flight_come_back_to_none():
    clock = FakeMonotonic(100.0)
    trimmer, released = make_trimmer(clock)
    trimmer.started()
    trimmer.started()
    trimmer.ended()
    assert released == []  # one job still runs: its allocations are live
    trimmer.ended()
    assert released == [100.0]


def test_at_most_one_trim_per_spacing_and_the_owed_one_is_paid_by_a_tick():
    clock = FakeMonotonic(100.0)
    trimmer, released = make_trimmer(clock)
    trimmer.started(), trimmer.ended()
    clock.now = 101.0
    trimmer.started(), trimmer.ended()  # idle again 1 s later: owed, not paid yet
    trimmer.tick()
    assert released == [100.0]
    clock.now = 102.5
    trimmer.started()
    trimmer.tick()  # owed, but a job runs again: not now
    assert released == [100.0]
    trimmer.ended()
    assert released == [100.0, 102.5]
    clock.now = 110.0
    trimmer.tick()  # nothing ran since: nothing owed
    assert released == [100.0, 102.5] and trimmer.trims == 2


def test_trim_and_the_arena_limit_run_here_or_do_nothing():
    """On glibc both act (mallopt and malloc_trim return 1 on success); elsewhere both are no-ops."""
    if memory._LIBC is None:
        assert memory.trim() is False and memory.limit_arenas({}) is False
    else:
        junk = [bytearray(4096) for _ in range(5000)]
        del junk
        assert memory.trim() in (True, False)  # True when pages were free; never an error
        assert memory.limit_arenas({}) is True


def test_the_operators_malloc_arena_max_wins():
    """MALLOC_ARENA_MAX in the environment (the unit's, or the operator's own): left as it is."""
    assert memory.limit_arenas({"MALLOC_ARENA_MAX": "4"}) is False


def test_x_counts_emoji_after_its_build_data_is_dropped():
    """After twitter-text is imported, its emoji table's build-time copies are gone, and X's count
    of emoji (the only user of that regex) is still 2 for each, as twitter-text's conformance says."""
    script = ("import sys; from bridge.publish.limits import x_weighted_length as count; "
              "n = count('Menpora 😀👨\u200d👩\u200d👧 🇮🇩 https://kemenpora.go.id/berita/1'); "
              "e = sys.modules['twitter_text.regexp.emoji']; "
              "print(n, hasattr(e, 'emoji_raw'), hasattr(e, 'emoji_list'), hasattr(e, 'emoji'))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [str(len("Menpora ") + 2 + 2 + 1 + 2 + 1 + 23), "False", "False", "True"]
