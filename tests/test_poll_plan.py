"""The daemon's poll plan and its dispatcher (bridge/poll_plan.py): the rules the per-source
scheduler jobs kept (one at a time, late runs once, jitter, a reload keeps a source's place), and
the batching that replaced them: polls due together run one after another on few threads, while a
hanging site never holds up another source for more than a spacing."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.poll_plan import DISPATCH_SPACING, RUNNER_SHARE, PollDispatcher, PollPlan
from tests.helpers import FakeMonotonic, wait_until

WAIT = 10


@pytest.fixture
def clock():
    return FakeMonotonic(5000.0)


class TestPlan:
    def test_a_new_source_is_due_at_once_then_by_its_interval_and_jitter(self, clock):
        fractions = iter([0.0, 1.0, 0.5])
        plan = PollPlan(clock, jitter_fraction=lambda: next(fractions))
        plan.plan([("a", 300, 30)])
        assert plan.take_due() == (["a"], [])
        assert plan.due_in("a") == 300  # no jitter drawn
        plan.done("a")
        clock.now += 300
        assert plan.take_due() == (["a"], [])
        plan.done("a")
        assert plan.due_in("a") == 330  # the whole jitter: interval from the un-jittered time
        clock.now += 329.9
        assert plan.take_due() == ([], [])
        clock.now += 0.1
        assert plan.take_due() == (["a"], [])
        assert plan.due_in("a") == pytest.approx(300 - 30 + 15)  # base moved by 300, jitter 15

    def test_a_source_still_running_is_skipped_and_its_next_run_follows_the_interval(self, clock):
        plan = PollPlan(clock, jitter_fraction=lambda: 0.0)
        plan.plan([("a", 60, 0), ("b", 60, 0)])
        assert sorted(plan.take_due()[0]) == ["a", "b"]
        plan.done("b")
        clock.now += 60
        due, skipped = plan.take_due()
        assert due == ["b"] and skipped == ["a"]
        assert plan.due_in("a") == 60  # not retried at once: the next interval
        plan.done("a")
        plan.done("b")
        clock.now += 60
        assert sorted(plan.take_due()[0]) == ["a", "b"]

    def test_a_late_run_runs_once_not_once_per_missed_interval(self, clock):
        plan = PollPlan(clock, jitter_fraction=lambda: 0.0)
        plan.plan([("a", 60, 0)])
        plan.take_due()
        plan.done("a")
        clock.now += 60 * 10 + 7  # a suspend of ten intervals
        assert plan.take_due() == (["a"], [])
        plan.done("a")
        assert plan.take_due() == ([], [])
        assert 0 < plan.due_in("a") <= 60

    def test_a_new_plan_keeps_unchanged_sources_in_place(self, clock):
        """A reload: the same interval keeps the next poll, a new interval or a new source is due
        now, a removed source is forgotten (its old entries never come up)."""
        plan = PollPlan(clock, jitter_fraction=lambda: 0.0)
        plan.plan([("same", 60, 0), ("changed", 60, 0), ("removed", 60, 0)])
        plan.take_due()
        for name in ("same", "changed", "removed"):
            plan.done(name)
        clock.now += 20
        plan.plan([("same", 60, 6), ("changed", 120, 0), ("added", 60, 0)])
        assert plan.names() == ["added", "changed", "same"]
        assert plan.due_in("same") == 40 and "removed" not in plan
        assert sorted(plan.take_due()[0]) == ["added", "changed"]
        clock.now += 40
        assert plan.take_due() == (["same"], [])
        assert plan.due_in("removed") is None

    def test_a_source_removed_then_added_again_is_polled_once(self, clock):
        """A reload that drops a source and a later one that brings it back: the entry left from
        before the removal does not come up as a second poll."""
        plan = PollPlan(clock, jitter_fraction=lambda: 0.0)
        plan.plan([("a", 60, 0)])
        assert plan.take_due() == (["a"], [])  # next due at 60
        plan.done("a")
        plan.plan([])
        clock.now += 10
        plan.plan([("a", 60, 0)])
        assert plan.take_due() == (["a"], [])  # back: due at once, then at 70
        plan.done("a")
        clock.now += 50  # 60: when the removed source's entry would have come up
        assert plan.take_due() == ([], []) and plan.due_in("a") == 10

    def test_soon_moves_a_poll_and_the_interval_follows_from_it(self, clock):
        plan = PollPlan(clock, jitter_fraction=lambda: 0.0)
        plan.plan([("a", 300, 0)])
        plan.take_due()
        plan.done("a")
        plan.soon("a", 5)
        plan.soon("gone", 5)  # removed by a reload meanwhile: nothing happens
        assert plan.next_due_in() == 5 and "gone" not in plan
        clock.now += 5
        assert plan.take_due() == (["a"], [])
        assert plan.due_in("a") == 300

    def test_nothing_planned(self, clock):
        plan = PollPlan(clock)
        assert plan.next_due_in() is None and plan.take_due() == ([], [])


class Recorder:
    """A run_one that records which thread ran which source, and can hold a source until released."""

    def __init__(self, hold: set[str] = frozenset(), pause: float = 0.0) -> None:
        self.hold, self.pause = set(hold), pause
        self.release = threading.Event()
        self.runs: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.now_running = self.most_at_once = 0

    def __call__(self, name: str) -> None:
        with self.lock:
            self.runs.append((name, threading.get_ident()))
            self.now_running += 1
            self.most_at_once = max(self.most_at_once, self.now_running)
        try:
            if name in self.hold:
                self.release.wait(WAIT)
            elif self.pause:
                time.sleep(self.pause)
        finally:
            with self.lock:
                self.now_running -= 1

    def names(self) -> list[str]:
        with self.lock:
            return [name for name, _ in self.runs]

    def threads(self) -> set[int]:
        with self.lock:
            return {thread for _, thread in self.runs}


@pytest.fixture
def dispatchers():
    made = []

    def make(run_one, concurrency=16, **kwargs) -> PollDispatcher:
        dispatcher = PollDispatcher(PollPlan(jitter_fraction=lambda: 0.0), run_one, concurrency, **kwargs)
        made.append((dispatcher, run_one))
        return dispatcher

    yield make
    for dispatcher, run_one in made:
        if isinstance(run_one, Recorder):
            run_one.release.set()
        dispatcher.stop()


class TestDispatcher:
    def test_polls_due_together_run_one_after_another_on_one_thread(self, dispatchers):
        recorder = Recorder()
        dispatcher = dispatchers(recorder)
        names = [f"s{n:02d}" for n in range(40)]
        dispatcher.plan.plan([(name, 3600, 0) for name in names])
        dispatcher.start()
        assert wait_until(lambda: len(recorder.names()) == 40, WAIT)
        assert sorted(recorder.names()) == names and len(recorder.threads()) == 1
        assert recorder.most_at_once == 1

    def test_a_cold_start_uses_every_thread_and_no_more(self, dispatchers):
        recorder = Recorder(pause=0.01)
        dispatcher = dispatchers(recorder, concurrency=4)
        dispatcher.plan.plan([(f"s{n}", 3600, 0) for n in range(RUNNER_SHARE * 2)])
        dispatcher.start()
        assert wait_until(lambda: len(recorder.names()) == RUNNER_SHARE * 2, 4 * WAIT)
        assert recorder.most_at_once == 4  # two threads for the hand-out, then one per poll waiting

    def test_a_hanging_site_holds_up_another_source_for_one_spacing_at_most(self, dispatchers):
        """The sources after a poll that hangs get threads of their own at the next hand-out."""
        recorder = Recorder(hold={"hangs"})
        dispatcher = dispatchers(recorder)
        dispatcher.plan.plan([("hangs", 3600, 0)])  # due first: first in the batch
        dispatcher.plan.plan([("hangs", 3600, 0), ("a", 3600, 0), ("b", 3600, 0)])
        started = time.monotonic()
        dispatcher.start()
        assert wait_until(lambda: set(recorder.names()) == {"hangs", "a", "b"}, WAIT)
        assert time.monotonic() - started < DISPATCH_SPACING + 2
        assert recorder.names()[0] == "hangs" and recorder.now_running == 1  # still hanging

    def test_a_source_is_never_polled_twice_at_once(self, dispatchers):
        """A source due again while its poll still runs is skipped and reported, not run beside it."""
        recorder = Recorder(hold={"slow"})
        skipped = []
        dispatcher = dispatchers(recorder, on_skip=skipped.append)
        dispatcher.plan.plan([("slow", 3600, 0)])
        dispatcher.start()
        assert wait_until(lambda: recorder.names() == ["slow"], WAIT)
        dispatcher.soon("slow")
        assert wait_until(lambda: skipped == ["poll slow"], WAIT)
        assert recorder.names() == ["slow"]
        recorder.release.set()
        assert wait_until(lambda: recorder.now_running == 0, WAIT)
        dispatcher.soon("slow")
        assert wait_until(lambda: recorder.names() == ["slow", "slow"], WAIT)

    def test_a_poll_that_raises_does_not_stop_the_others(self, dispatchers):
        ran = []

        def run_one(name):
            ran.append(name)
            if name == "bad":
                raise RuntimeError("a bug")

        dispatcher = dispatchers(run_one)
        dispatcher.plan.plan([("bad", 3600, 0), ("good", 3600, 0)])
        dispatcher.start()
        assert wait_until(lambda: sorted(ran) == ["bad", "good"], WAIT)
        dispatcher.soon("bad")
        assert wait_until(lambda: ran.count("bad") == 2, WAIT)  # planned again, not stuck "running"

    def test_stop_starts_nothing_more(self, dispatchers):
        recorder = Recorder(hold={"s0"})
        dispatcher = dispatchers(recorder, concurrency=1)
        dispatcher.plan.plan([("s0", 3600, 0)])  # due first: first in the batch
        dispatcher.plan.plan([(f"s{n}", 3600, 0) for n in range(5)])
        dispatcher.start()
        assert wait_until(lambda: recorder.names() == ["s0"], WAIT)
        dispatcher.stop()
        recorder.release.set()
        time.sleep(DISPATCH_SPACING * 2)
        assert recorder.names() == ["s0"]
        assert not dispatcher.alive(60)

    def test_alive_until_it_stops_looking_at_the_plan(self):
        clock = FakeMonotonic(5000.0)
        dispatcher = PollDispatcher(PollPlan(clock), lambda _name: None, 1, monotonic=clock)
        assert dispatcher.alive(60)  # not started: nothing to prove yet
        dispatcher.start()
        try:
            assert wait_until(lambda: dispatcher.alive(60), WAIT)
            clock.now += 61  # the thread has not looked since (its real wait is seconds long)
            assert not dispatcher.alive(60)
        finally:
            dispatcher.stop()
