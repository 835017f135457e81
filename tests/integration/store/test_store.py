"""The storage port's contract, for every adapter."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from taskyard.errors import AlreadyExistsError
from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import (
    Artifact,
    ArtifactFile,
    Attempt,
    Result,
    Role,
    SchedulerRecord,
    State,
    Tenant,
    Token,
    Worker,
    WorkError,
    WorkRequest,
)
from taskyard.scheduler.store.port import Store, WorkRequestFilter
from taskyard.scheduler.store.schema import metadata
from taskyard.scheduler.store.sql import SqlStore

NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def request(number: int, **changes: object) -> WorkRequest:
    base = WorkRequest(
        id=f"wr{number:04d}",
        task_name="noop",
        task_data_json='{"sleep": 0, "big": 123456789012345678901234567890}',
        priority=0,
        created_at=NOW,
        queue_key=f"wr{number:04d}",
        trace_context={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_work_request_round_trips_exactly(store: Store) -> None:
    original = request(
        1,
        error=WorkError("task-raised", "boom", "RuntimeError"),
        timeout_seconds=2.5,
        idempotency_key="k1",
        updated_at=NOW + timedelta(seconds=1),
    )
    with store.transaction() as tx:
        tx.insert_work_request(original)
    with store.transaction() as tx:
        assert tx.get_work_request("wr0001") == original
        assert tx.get_work_request_by_idempotency_key("default", "k1") == original
        assert tx.get_work_request_by_idempotency_key("other", "k1") is None
        assert tx.get_work_request("nope") is None


def test_ids_and_idempotency_keys_are_unique(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert_work_request(request(1, idempotency_key="k"))
    for duplicate in (request(1), request(2, idempotency_key="k")):
        with pytest.raises(AlreadyExistsError), store.transaction() as tx:
            tx.insert_work_request(duplicate)
    with store.transaction() as tx:
        assert tx.get_work_request("wr0002") is None


def _insert_then_fail(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert_work_request(request(1))
        raise RuntimeError("abandon")


def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        _insert_then_fail(store)
    with store.transaction() as tx:
        assert tx.get_work_request("wr0001") is None


def test_replace_is_a_compare_and_set_on_state_and_attempt(store: Store) -> None:
    pending = request(1)
    with store.transaction() as tx:
        tx.insert_work_request(pending)
    assigned = lifecycle.assign(pending, "w1", NOW)
    with store.transaction() as tx:
        assert tx.claim_work_request(assigned)
        assert not tx.claim_work_request(assigned)  # not pending any more
        stale = dataclasses.replace(assigned, attempt=2)
        assert not tx.replace_work_request(stale, expected_state=State.ASSIGNED, expected_attempt=2)
        running = lifecycle.start(assigned, NOW)
        assert not tx.replace_work_request(
            running, expected_state=State.RUNNING, expected_attempt=1
        )
        assert tx.replace_work_request(running, expected_state=State.ASSIGNED, expected_attempt=1)
        assert tx.get_work_request("wr0001") == running


def test_list_filters_and_pages_newest_first(store: Store) -> None:
    with store.transaction() as tx:
        for number in range(1, 8):
            state = State.ABORTED if number % 2 else State.PENDING
            task = "noop" if number < 6 else "other"
            tx.insert_work_request(request(number, state=state, task_name=task))
    with store.transaction() as tx:
        everything = tx.list_work_requests(WorkRequestFilter(), limit=100)
        assert [w.id for w in everything] == [f"wr{n:04d}" for n in range(7, 0, -1)]
        page = tx.list_work_requests(WorkRequestFilter(), limit=3, before_id="wr0006")
        assert [w.id for w in page] == ["wr0005", "wr0004", "wr0003"]
        pending_noop = WorkRequestFilter(states=frozenset({State.PENDING}), task_name="noop")
        assert [w.id for w in tx.list_work_requests(pending_noop, limit=100)] == [
            "wr0004",
            "wr0002",
        ]
        live = tx.work_requests_in_states({State.PENDING})
        assert [w.id for w in live] == ["wr0002", "wr0004", "wr0006"]


def test_workers(store: Store) -> None:
    worker = Worker("w1", "f" * 64, NOW, slots=2, dynamic_metadata={"noop:version": 1})
    with store.transaction() as tx:
        tx.insert_worker(worker)
    with pytest.raises(AlreadyExistsError), store.transaction() as tx:
        tx.insert_worker(dataclasses.replace(worker, name="w2"))
    changed = dataclasses.replace(
        worker, enabled=True, static_metadata={"x": [1]}, allowed_tasks=("noop",), last_seen_at=NOW
    )
    with store.transaction() as tx:
        tx.replace_worker(changed)
        tx.insert_worker(Worker("a0", "e" * 64, NOW))
    with store.transaction() as tx:
        assert tx.get_worker("w1") == changed
        assert tx.get_worker_by_token("f" * 64) == changed
        assert tx.get_worker_by_token("0" * 64) is None
        assert [w.name for w in tx.list_workers()] == ["a0", "w1"]


def test_tokens(store: Store) -> None:
    older = Token("t1", "1" * 64, Role.ADMIN, NOW, "first")
    newer = Token("t2", "2" * 64, Role.SUBMIT, NOW + timedelta(seconds=1), expires_at=NOW,
                  tenant="team-a")  # fmt: skip
    with store.transaction() as tx:
        tx.insert_token(older)
        tx.insert_token(newer)
    with pytest.raises(AlreadyExistsError), store.transaction() as tx:
        tx.insert_token(dataclasses.replace(older, id="t3"))
    revoked = dataclasses.replace(older, revoked_at=NOW)
    with store.transaction() as tx:
        tx.replace_token(revoked)
    with store.transaction() as tx:
        assert tx.get_token("t1") == revoked
        assert tx.get_token_by_hash("2" * 64) == newer
        assert [t.id for t in tx.list_tokens()] == ["t2", "t1"]


def test_the_migrations_build_exactly_the_declared_schema(sql_store: SqlStore) -> None:
    with sql_store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_attempts_are_kept_in_order_and_go_with_their_request(store: Store) -> None:
    running = lifecycle.start(lifecycle.assign(request(1), "w1", NOW), NOW)
    lost = running.moved_to(State.PENDING, NOW + timedelta(seconds=1), attempt=2)
    gone = WorkError("worker-lost", "worker w1 was lost")
    failed = lifecycle.complete(running, Result.FAILURE, NOW + timedelta(seconds=2))
    with store.transaction() as tx:
        tx.insert_work_request(request(1))
        tx.insert_work_request(request(2, task_name="other"))
        tx.insert_attempt(Attempt.ended(running, lost, gone))
        tx.insert_attempt(Attempt.ended(running, failed, None))
    with store.transaction() as tx:
        first, second = tx.attempts_of("wr0001")
        counts = tx.count_work_requests()
    assert (first.outcome, first.reason, first.worker_name) == (State.PENDING, "worker-lost", "w1")
    assert first.started_at == NOW
    assert (second.outcome, second.result, second.ended_at) == (
        State.COMPLETED,
        Result.FAILURE,
        NOW + timedelta(seconds=2),
    )
    assert counts == {(State.PENDING, "noop"): 1, (State.PENDING, "other"): 1}
    with store.transaction() as tx:
        tx.delete_work_requests(["wr0001"])
    with store.transaction() as tx:
        assert tx.attempts_of("wr0001") == []


def test_a_lease_has_one_holder_at_a_time_and_a_term_that_fences(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.take_lease("maintenance", "a", 0.3) == 1
        assert tx.take_lease("maintenance", "b", 0.3) is None  # held
        assert tx.take_lease("maintenance", "a", 0.3) == 1  # renewed, same term
        assert tx.holds_lease("maintenance", "a", 1)
    time.sleep(0.35)  # "a" stopped renewing: its lease ran out
    with store.transaction() as tx:
        assert not tx.holds_lease("maintenance", "a", 1)
        assert tx.take_lease("maintenance", "b", 30) == 2
        assert not tx.holds_lease("maintenance", "a", 1)  # its writes are refused now
        assert tx.holds_lease("maintenance", "b", 2)
        assert tx.take_lease("maintenance", "a", 30) is None


def test_schedulers_say_they_are_alive(store: Store) -> None:
    started = datetime(2026, 12, 7, tzinfo=UTC)
    with store.transaction() as tx:
        tx.beat(SchedulerRecord("s1", "127.0.0.1:1", "", started, started))
        tx.beat(SchedulerRecord("s2", "127.0.0.1:2", "http://x/", started, started))
        tx.beat(SchedulerRecord("s1", "127.0.0.1:1", "", started, started))
        found = tx.schedulers()
        now = tx.now()
    assert [s.id for s in found] == ["s1", "s2"]
    assert all(s.seen_at > started and s.seen_at <= now for s in found)


def test_an_artifact_round_trips_and_its_key_is_its_creators_own(store: Store) -> None:
    files = (ArtifactFile("a.txt", 3, "0" * 64, "text/plain", complete=True),
             ArtifactFile("b/c", 5, "1" * 64))  # fmt: skip
    keyed = Artifact("ar1", "logs", NOW, files, work_request_id="wr1", created_by="worker:w1",
                     idempotency_key="k1", tenant="team-a")  # fmt: skip
    with store.transaction() as tx:
        tx.insert_artifact(keyed)
        tx.insert_artifact(dataclasses.replace(keyed, id="ar2", created_by="token:t1"))
        tx.insert_artifact(dataclasses.replace(keyed, id="ar3", idempotency_key=""))
        tx.insert_artifact(dataclasses.replace(keyed, id="ar4", idempotency_key=""))
    with store.transaction() as tx:
        assert tx.get_artifact("ar1") == keyed
        assert not keyed.complete
        assert tx.get_artifact_by_key("worker:w1", "k1") == keyed
        by_other = tx.get_artifact_by_key("token:t1", "k1")
        assert by_other is not None
        assert by_other.id == "ar2"
        assert tx.get_artifact_by_key("token:t2", "k1") is None
    with pytest.raises(AlreadyExistsError), store.transaction() as tx:
        tx.insert_artifact(dataclasses.replace(keyed, id="ar5"))  # the same creator's key


def test_tenants_and_keys_that_are_each_tenants_own(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.list_tenants() == [Tenant("default")]  # what was there before tenants
        tx.put_tenant(Tenant("team-a", weight=2.0, max_running=4))
        tx.put_tenant(Tenant("team-b", max_pending=10))
        tx.put_tenant(Tenant("team-a", weight=3.0))  # changed
        tx.insert_work_request(request(1, idempotency_key="k", tenant="team-a"))
        tx.insert_work_request(request(2, idempotency_key="k", tenant="team-b"))
    with store.transaction() as tx:
        assert tx.get_tenant("team-a") == Tenant("team-a", weight=3.0)
        assert tx.get_tenant("nobody") is None
        assert [t.name for t in tx.list_tenants()] == ["default", "team-a", "team-b"]
        found = tx.get_work_request_by_idempotency_key("team-b", "k")
        assert found is not None
        assert found.id == "wr0002"
        listed = tx.list_work_requests(WorkRequestFilter(tenant="team-a"), limit=10)
        assert [w.id for w in listed] == ["wr0001"]
    with pytest.raises(AlreadyExistsError), store.transaction() as tx:
        tx.insert_work_request(request(3, idempotency_key="k", tenant="team-a"))
