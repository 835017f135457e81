"""Messages ready together share a stream element, within the size limit."""

from __future__ import annotations

from taskyard.rpc.batching import batches
from taskyard.v1 import common_pb2


def lease(name: str) -> common_pb2.Lease:
    return common_pb2.Lease(work_request_id=name, attempt=1)


def test_everything_goes_in_one_batch_when_it_fits() -> None:
    items = [lease(f"wr-{i}") for i in range(5)]
    assert list(batches(items)) == [items]


def test_batches_split_at_the_budget_and_keep_the_order() -> None:
    items = [lease(f"wr-{i}") for i in range(5)]
    size = items[0].ByteSize()
    parts = list(batches(items, budget=2 * size))
    assert parts == [items[0:2], items[2:4], items[4:5]]


def test_an_item_larger_than_the_budget_goes_alone() -> None:
    small, big = lease("a"), lease("b" * 100)
    assert list(batches([small, big, small], budget=20)) == [[small], [big], [small]]


def test_nothing_gives_no_batch() -> None:
    assert list(batches([])) == []
