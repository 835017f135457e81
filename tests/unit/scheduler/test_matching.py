"""Matching: table tests, verdict cache and its invalidation."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from taskyard.scheduler.matching import (
    FairShare,
    PendingEntry,
    PendingIndex,
    Served,
    Shape,
    Share,
    VerdictCache,
    WorkerView,
    fingerprint,
    pick,
)
from taskyard.tasks import Task
from tests.helpers import unregistered

pytestmark = pytest.mark.usefixtures("isolated_registry")


@unregistered
class Arch(Task):
    """Runs only where the worker reports the architecture in the data."""

    TASK_VERSION = 1
    calls = 0

    def can_run_on(self, worker_metadata: dict[str, Any]) -> bool:
        Arch.calls += 1
        if not super().can_run_on(worker_metadata):
            return False
        assert self.data is not None
        return bool(worker_metadata.get("system:arch") == self.data["arch"])

    def _execute(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _register(isolated_registry: dict[str, type[Task]]) -> None:
    isolated_registry["arch"] = Arch
    Arch.calls = 0


def arch_task(arch: str) -> Task:
    task = Arch()
    task.configure({"arch": arch})
    return task


def index_of(*requests: tuple[str, str, int]) -> PendingIndex:
    """Requests as (id, arch, priority), submitted in this order."""
    index = PendingIndex()
    for position, (request_id, arch, priority) in enumerate(requests):
        shape = Shape("arch", fingerprint({"arch": arch}))
        index.add(PendingEntry.of(request_id, shape, priority, f"{position:04d}"), arch_task(arch))
    return index


def worker(arch: str, name: str = "w", **lists: Any) -> WorkerView:
    return WorkerView.of(
        name,
        {"arch:version": 1, "system:arch": arch},
        lists.get("allow", ()),
        lists.get("deny", ()),
    )


@pytest.mark.parametrize(
    ("requests", "worker_arch", "expected"),
    [
        pytest.param([], "amd64", None, id="empty queue"),
        pytest.param([("a", "amd64", 0)], "amd64", "a", id="one that fits"),
        pytest.param([("a", "arm64", 0)], "amd64", None, id="nothing fits"),
        pytest.param(
            [("a", "amd64", 0), ("b", "amd64", 5)], "amd64", "b", id="higher priority first"
        ),
        pytest.param(
            [("a", "amd64", 1), ("b", "amd64", 1)], "amd64", "a", id="equal priority: FIFO"
        ),
        pytest.param(
            [("hi", "arm64", 9), ("lo", "amd64", 0)],
            "amd64",
            "lo",
            id="what nobody here can run does not block lower priorities",
        ),
        pytest.param(
            [("a", "amd64", 0), ("b", "arm64", 0), ("c", "amd64", 0)],
            "amd64",
            "a",
            id="oldest of several shapes",
        ),
    ],
)
def test_pick(requests: list[tuple[str, str, int]], worker_arch: str, expected: str | None) -> None:
    chosen = pick(worker(worker_arch), index_of(*requests), VerdictCache())
    assert (chosen.id if chosen else None) == expected


def test_a_version_mismatch_is_never_picked() -> None:
    view = WorkerView.of("w", {"arch:version": 2, "system:arch": "amd64"})
    assert pick(view, index_of(("a", "amd64", 0)), VerdictCache()) is None


@pytest.mark.parametrize(
    ("allow", "deny", "expected"),
    [
        ((), (), "a"),
        ((), ("arch",), None),
        (("noop",), (), None),
        (("arch",), (), "a"),
        (("arch",), ("arch",), None),
    ],
)
def test_allow_and_deny_lists(
    allow: tuple[str, ...], deny: tuple[str, ...], expected: str | None
) -> None:
    view = worker("amd64", allow=allow, deny=deny)
    chosen = pick(view, index_of(("a", "amd64", 0)), VerdictCache())
    assert (chosen.id if chosen else None) == expected


def test_removed_requests_are_skipped() -> None:
    index = index_of(("a", "amd64", 5), ("b", "amd64", 0))
    assert index.discard("a") is not None
    chosen = pick(worker("amd64"), index, VerdictCache())
    assert chosen is not None
    assert chosen.id == "b"
    assert len(index) == 1


def test_can_run_on_is_asked_once_per_shape_and_metadata_whatever_the_queue_length() -> None:
    # The refused shape is older, so both shapes must be judged for each worker.
    requests = [(f"r{i}", "amd64" if i % 2 else "arm64", 0) for i in range(1000)]
    index = index_of(*requests)
    verdicts = VerdictCache()
    for name in ("w1", "w2", "w3"):  # identical metadata: the verdicts are shared
        pick(worker("amd64", name), index, verdicts)
    assert Arch.calls == 2
    assert verdicts.misses == 2
    assert verdicts.hits == 4


def test_a_metadata_change_invalidates_the_verdicts() -> None:
    index = index_of(("a", "arm64", 0))
    verdicts = VerdictCache()
    assert pick(worker("amd64"), index, verdicts) is None
    chosen = pick(worker("arm64"), index, verdicts)  # the worker now reports arm64
    assert chosen is not None
    assert chosen.id == "a"
    assert verdicts.misses == 2


def test_the_cache_is_bounded() -> None:
    verdicts = VerdictCache(max_entries=2)
    index = index_of(("a", "amd64", 0))
    for arch in ("amd64", "arm64", "riscv64", "amd64"):
        pick(worker(arch), index, verdicts)
    assert verdicts.misses == 4


def tenants_index(*requests: tuple[str, str, str]) -> PendingIndex:
    """Requests as (id, tenant, arch), submitted in this order, priority 0."""
    index = PendingIndex()
    for position, (request_id, tenant, arch) in enumerate(requests):
        shape = Shape("arch", fingerprint({"arch": arch}))
        entry = PendingEntry.of(request_id, shape, 0, f"{position:04d}", tenant)
        index.add(entry, arch_task(arch))
    return index


class Pass:
    """A fair share over an index, counting what it hands out as running."""

    def __init__(
        self,
        index: PendingIndex,
        running: dict[str, int],
        shares: dict[str, Share] | None = None,
        served: Served | None = None,
    ) -> None:
        self.index = index
        self.running: Counter[str] = Counter(running)
        self.fair = FairShare(self.running.__getitem__, shares or {}, served or Served())
        for tenant in index.tenants():
            self.fair.touch(tenant)

    def take(self, view: WorkerView, slots: int) -> list[str]:
        """What `slots` free slots of `view` take, in order."""
        taken = []
        for _ in range(slots):
            entry = self.fair.pick(view, self.index, VerdictCache())
            if entry is None:
                break
            self.index.discard(entry.id)
            self.running[entry.tenant] += 1
            self.fair.touch(entry.tenant)
            taken.append(entry.id)
        return taken


def test_a_flood_does_not_starve_a_tenant_that_comes_later() -> None:
    flood = [(f"a{n}", "a", "amd64") for n in range(100)]
    index = tenants_index(*flood, ("b0", "b", "amd64"), ("b1", "b", "amd64"))
    # a holds 4 slots; the next two free slots go to b first, then a again.
    assert Pass(index, {"a": 4}).take(worker("amd64"), 3) == ["b0", "b1", "a0"]


def test_four_slots_come_out_two_to_one_over_time_for_weights_two_to_one() -> None:
    """Slots freeing one at a time, each taken at once: the running shares,
    averaged, follow the weights (the instantaneous rule alone would hold
    3:1 for ever)."""
    index = tenants_index(*[(f"{t}{n:04d}", t, "amd64") for n in range(2000) for t in "ab"])
    fair = Pass(index, {}, {"a": Share(weight=2.0)})
    running = fair.take(worker("amd64"), 4)  # in the order they end
    held = {"a": 0, "b": 0}
    for _ in range(1200):
        ended = running.pop(0)
        fair.running[ended[0]] -= 1
        fair.fair.touch(ended[0])
        running += fair.take(worker("amd64"), 1)
        for request in running:
            held[request[0]] += 1
    assert abs(held["a"] / held["b"] - 2.0) < 0.1


def test_weights_share_the_slots_in_proportion() -> None:
    index = tenants_index(*[(f"{t}{n}", t, "amd64") for n in range(50) for t in "ab"])
    taken = Pass(index, {}, {"a": Share(weight=2.0)}).take(worker("amd64"), 30)
    assert sum(t.startswith("a") for t in taken) == 20  # 2:1
    assert sum(t.startswith("b") for t in taken) == 10


def test_a_tenant_alone_gets_every_slot_and_a_ceiling_holds_it_back() -> None:
    index = tenants_index(*[(f"a{n}", "a", "amd64") for n in range(10)])
    assert len(Pass(index, {}).take(worker("amd64"), 8)) == 8
    capped = tenants_index(*[(f"a{n}", "a", "amd64") for n in range(10)])
    held_back = Pass(capped, {"a": 1}, {"a": Share(max_running=3)})
    assert held_back.take(worker("amd64"), 8) == ["a0", "a1"]
    held_back.running["a"] -= 1  # one of them ends
    held_back.fair.touch("a")
    assert held_back.take(worker("amd64"), 8) == ["a2"]


def test_ties_go_to_the_tenant_served_least_for_its_weight() -> None:
    served = Served()
    served.note("a", 1.0)
    index = tenants_index(("a0", "a", "amd64"), ("b0", "b", "amd64"))
    assert Pass(index, {}, served=served).take(worker("amd64"), 1) == ["b0"]


def test_work_the_worker_cannot_run_is_skipped_and_reserved_workers_serve_their_own() -> None:
    index = tenants_index(("a0", "a", "arm64"), ("a1", "a", "amd64"), ("b0", "b", "amd64"))
    fair = Pass(index, {"b": 5})
    assert fair.take(worker("amd64"), 1) == ["a1"]  # a's arm64 request does not block
    reserved = WorkerView.of("r", {"arch:version": 1, "system:arch": "amd64"}, tenants=("b",))
    assert fair.take(reserved, 2) == ["b0"]  # only b's, though a waits


def test_the_best_runnable_request_is_found_whatever_came_and_went() -> None:
    """Against the obvious way (sort what is live), over random adds, removals
    and picks, by workers that can run one shape only."""
    rng = random.Random(7)
    index = PendingIndex()
    live: dict[str, PendingEntry] = {}
    shapes = {arch: Shape("arch", fingerprint({"arch": arch})) for arch in ("x", "y", "z")}
    for step in range(3000):
        roll = rng.random()
        if roll < 0.5 or not live:
            arch, number = rng.choice(sorted(shapes)), f"r{step:05d}"
            entry = PendingEntry.of(
                number, shapes[arch], rng.randrange(3), number, rng.choice("ab")
            )
            index.add(entry, arch_task(arch))
            live[number] = entry
        elif roll < 0.7:
            gone = rng.choice(sorted(live))
            index.discard(gone)
            del live[gone]
        else:
            shape, tenant = shapes[rng.choice(sorted(shapes))], rng.choice("ab")
            want = sorted(
                (e for e in live.values() if (e.tenant, e.shape) == (tenant, shape)),
                key=lambda e: e.sort_key,
            )

            def runnable(head: PendingEntry, shape: Shape = shape) -> bool:
                return head.shape == shape

            found = index.best(tenant, runnable)
            assert found == (want[0] if want else None), step
            if found is not None:
                index.discard(found.id)
                del live[found.id]
