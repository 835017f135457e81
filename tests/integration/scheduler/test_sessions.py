"""Worker sessions: assignment pushed, reports, stale leases, lease expiry, abort."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import update

from taskyard.rpc import status as rpc_status
from taskyard.scheduler.store.schema import leases
from taskyard.scheduler.store.sql import SqlStore
from taskyard.v1 import common_pb2, workers_pb2
from taskyard.v1 import work_requests_pb2 as pb
from tests.integration.scheduler.harness import (
    Harness,
    completion,
    start_harness,
    started_report,
    stop_harness,
)


async def test_register_enable_connect_assign_complete(harness: Harness) -> None:
    worker = await harness.new_worker("builder")
    welcome = await worker.connect()
    assert welcome.worker_name == "builder"
    assert welcome.heartbeat_interval.ToNanoseconds() == 500_000_000

    work_request_id = await harness.submit("noop", {"sleep": 0}, priority=3)
    assignment = await worker.expect("assignment")
    assert assignment.lease == common_pb2.Lease(work_request_id=work_request_id, attempt=1)
    assert assignment.task_name == "noop"
    assert json.loads(assignment.task_data_json) == {"sleep": 0}
    assert assignment.task_version == 1

    worker.started(assignment.lease)
    await harness.wait_for_state(work_request_id, pb.WORK_REQUEST_STATE_RUNNING)
    assert worker.received.empty()  # an accepted start is not answered

    worker.completed(assignment.lease, workers_pb2.WORK_OUTCOME_SUCCESS, output_json='{"n": 1}')
    ack = await worker.expect("ack")
    assert ack.kind == workers_pb2.REPORT_KIND_COMPLETED
    assert not ack.HasField("problem")
    done = await harness.get(work_request_id)
    assert (done.state, done.result) == (
        pb.WORK_REQUEST_STATE_COMPLETED,
        pb.WORK_REQUEST_RESULT_SUCCESS,
    )
    assert (done.worker_name, done.output_json) == ("builder", '{"n": 1}')
    for stamp in (done.created_at, done.assigned_at, done.started_at, done.completed_at):
        assert stamp.seconds > 0
    await worker.disconnect()


async def test_reports_sent_together_are_each_recorded(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect(slots=3)
    ids = [await harness.submit("noop") for _ in range(3)]
    leases = {lease.work_request_id: lease for lease in
              [(await worker.expect("assignment")).lease for _ in ids]}  # fmt: skip
    first, second, third = (leases[i] for i in ids)
    watch = harness.work_requests.Watch(pb.WatchRequest(id=ids[0]), metadata=harness.submitter)
    assert (await anext(aiter(watch))).work_request.state == pb.WORK_REQUEST_STATE_ASSIGNED

    worker.report(
        started_report(first),
        completion(first, workers_pb2.WORK_OUTCOME_SUCCESS),
        started_report(second),
        completion(second, workers_pb2.WORK_OUTCOME_FAILURE),
        started_report(third),
    )
    acks = [await worker.expect("ack") for _ in range(2)]
    assert {ack.lease.work_request_id for ack in acks} == {ids[0], ids[1]}
    assert not any(ack.HasField("problem") for ack in acks)
    # A start folded into its completion is still seen running, then done.
    seen = [change.work_request async for change in watch]
    assert [w.state for w in seen] == [
        pb.WORK_REQUEST_STATE_RUNNING,
        pb.WORK_REQUEST_STATE_COMPLETED,
    ]
    assert seen[1].started_at == seen[0].started_at
    assert seen[1].started_at.seconds > 0
    assert (await harness.get(ids[1])).result == pb.WORK_REQUEST_RESULT_FAILURE
    await harness.wait_for_state(ids[2], pb.WORK_REQUEST_STATE_RUNNING)
    assert worker.received.empty()  # accepted starts are not answered
    await worker.disconnect()


async def test_a_report_of_an_unknown_kind_is_refused_in_its_ack(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    worker.report(workers_pb2.WorkReport())  # as a newer worker's unknown kind arrives
    ack = await worker.expect("ack")
    assert (ack.kind, ack.problem.reason) == (
        workers_pb2.REPORT_KIND_UNSPECIFIED,
        "REPORT_KIND_UNKNOWN",
    )
    worker.send(heartbeat=workers_pb2.WorkerHeartbeat())  # the session goes on


async def test_work_waiting_before_the_worker_connects_is_pushed_on_connect(
    harness: Harness,
) -> None:
    first = await harness.submit("noop", {"result": True})
    second = await harness.submit("noop", {"result": False}, priority=10)
    worker = await harness.new_worker()
    await worker.connect(slots=2)
    pushed = {(await worker.expect("assignment")).lease.work_request_id for _ in range(2)}
    assert pushed == {first, second}
    await worker.disconnect()


async def test_priority_then_fifo_on_a_single_slot(harness: Harness) -> None:
    low = await harness.submit("noop", priority=0)
    high_old = await harness.submit("noop", priority=5)
    high_new = await harness.submit("noop", priority=5)
    worker = await harness.new_worker()
    await worker.connect(slots=1)
    order = []
    for _ in range(3):
        lease = (await worker.expect("assignment")).lease
        order.append(lease.work_request_id)
        worker.completed(lease, workers_pb2.WORK_OUTCOME_SUCCESS)
        await worker.expect("ack")
    assert order == [high_old, high_new, low]
    await worker.disconnect()


async def test_a_start_with_a_stale_lease_is_refused(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    await harness.submit()
    lease = (await worker.expect("assignment")).lease
    worker.started(common_pb2.Lease(work_request_id=lease.work_request_id, attempt=7))
    ack = await worker.expect("ack")
    assert (ack.kind, ack.problem.reason) == (workers_pb2.REPORT_KIND_STARTED, "STALE_LEASE")
    await worker.disconnect()


async def test_a_stale_lease_is_refused_and_changes_nothing(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    work_request_id = await harness.submit()
    lease = (await worker.expect("assignment")).lease
    stale = common_pb2.Lease(work_request_id=work_request_id, attempt=lease.attempt + 1)
    worker.completed(stale, workers_pb2.WORK_OUTCOME_FAILURE)
    ack = await worker.expect("ack")
    assert ack.problem.code == 9  # FAILED_PRECONDITION
    assert ack.problem.reason == "STALE_LEASE"
    assert (await harness.get(work_request_id)).state == pb.WORK_REQUEST_STATE_ASSIGNED
    await worker.disconnect()


async def test_a_resent_completion_is_acknowledged_again(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    await harness.submit()
    lease = (await worker.expect("assignment")).lease
    for _ in range(2):
        worker.completed(lease, workers_pb2.WORK_OUTCOME_SUCCESS)
        assert not (await worker.expect("ack")).HasField("problem")
    await worker.disconnect()


async def test_a_stream_cut_mid_batch_of_reports_records_each_once(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect(slots=3)
    ids = [await harness.submit("noop") for _ in range(3)]
    leases = [(await worker.expect("assignment")).lease for _ in ids]
    batch = [
        report
        for lease in leases
        for report in (started_report(lease), completion(lease, workers_pb2.WORK_OUTCOME_SUCCESS))
    ]
    worker.report(*batch)
    await worker.disconnect()  # cut at once: recorded, or not, unacknowledged either way
    await worker.connect(slots=3, running=leases)  # the outbox's results are held
    worker.report(*batch)  # sent again, as after any reconnect
    acks = [await worker.expect("ack") for _ in leases]
    assert not any(ack.HasField("problem") for ack in acks)
    assert {ack.lease.work_request_id for ack in acks} == set(ids)
    for work_request_id in ids:
        done = await harness.get(work_request_id)
        assert (done.state, done.result) == (
            pb.WORK_REQUEST_STATE_COMPLETED,
            pb.WORK_REQUEST_RESULT_SUCCESS,
        )
        assert done.attempt == 1  # recorded once: no attempt was lost or run again
    await worker.disconnect()


async def test_prefetch_fills_a_queue_only_behind_every_free_slot(harness: Harness) -> None:
    queueing = await harness.new_worker("queueing")
    await queueing.connect(slots=1, prefetch=2)
    idle = await harness.new_worker("idle")
    await idle.connect(slots=1)
    first, second = await harness.submit(), await harness.submit()
    got = {(await w.expect("assignment")).lease.work_request_id for w in (queueing, idle)}
    assert got == {first, second}  # the idle worker's slot before a queue
    more = [await harness.submit() for _ in range(3)]
    queued = [(await queueing.expect("assignment")).lease.work_request_id for _ in range(2)]
    assert queued == more[:2]  # its queue holds two, in order
    assert (await harness.get(more[2])).state == pb.WORK_REQUEST_STATE_PENDING
    assert queueing.received.empty()  # one slot and two queued: full
    for worker in (queueing, idle):
        await worker.disconnect()


async def test_a_lost_worker_has_its_lease_expire_and_the_work_requeued(harness: Harness) -> None:
    first = await harness.new_worker("first")
    await first.connect()
    work_request_id = await harness.submit()
    lease = (await first.expect("assignment")).lease
    first.started(lease)
    await harness.wait_for_state(work_request_id, pb.WORK_REQUEST_STATE_RUNNING)
    await first.disconnect()

    requeued = await harness.wait_for_state(work_request_id, pb.WORK_REQUEST_STATE_PENDING)
    assert requeued.attempt == 2
    second = await harness.new_worker("second")
    await second.connect()
    assignment = await second.expect("assignment")
    assert assignment.lease.attempt == 2
    second.completed(assignment.lease, workers_pb2.WORK_OUTCOME_SUCCESS)
    await second.expect("ack")
    done = await harness.get(work_request_id)
    assert (done.result, done.worker_name) == (pb.WORK_REQUEST_RESULT_SUCCESS, "second")
    await second.disconnect()


async def test_a_worker_back_in_time_keeps_its_lease(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    work_request_id = await harness.submit()
    lease = (await worker.expect("assignment")).lease
    await worker.disconnect()
    await worker.connect(running=[lease])
    await asyncio.sleep(harness.config.lease_grace * 2)
    worker.completed(lease, workers_pb2.WORK_OUTCOME_SUCCESS)
    assert not (await worker.expect("ack")).HasField("problem")
    assert (await harness.get(work_request_id)).attempt == 1
    await worker.disconnect()


async def test_attempts_run_out_into_error_worker_lost(harness: Harness) -> None:
    work_request_id = await harness.submit("noop", max_attempts=1)
    worker = await harness.new_worker()
    await worker.connect()
    await worker.expect("assignment")
    await worker.disconnect()
    done = await harness.wait_for_state(work_request_id, pb.WORK_REQUEST_STATE_COMPLETED)
    assert done.result == pb.WORK_REQUEST_RESULT_ERROR
    assert done.error.reason == "worker-lost"


async def test_a_silent_worker_is_treated_as_lost(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect(heartbeats=False)
    work_request_id = await harness.submit("noop")
    await worker.expect("assignment")
    # Sends no heartbeat: after the missed-heartbeat window the session closes.
    requeued = await harness.wait_for_state(work_request_id, pb.WORK_REQUEST_STATE_PENDING)
    assert requeued.attempt == 2
    await worker.disconnect()


async def test_abort_of_running_work_is_pushed_and_confirmed(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    work_request_id = await harness.submit("noop", {"sleep": 60})
    lease = (await worker.expect("assignment")).lease
    worker.started(lease)
    await harness.wait_for_state(work_request_id, pb.WORK_REQUEST_STATE_RUNNING)
    response = await harness.work_requests.Abort(
        pb.AbortRequest(id=work_request_id), metadata=harness.submitter
    )
    assert response.work_request.state == pb.WORK_REQUEST_STATE_RUNNING
    abort = await worker.expect("abort")
    assert abort.lease == lease
    assert abort.reason == workers_pb2.ABORT_REASON_USER
    worker.completed(lease, workers_pb2.WORK_OUTCOME_ABORTED)
    await worker.expect("ack")
    assert (await harness.get(work_request_id)).state == pb.WORK_REQUEST_STATE_ABORTED
    await worker.disconnect()


async def test_abort_of_pending_work_is_immediate(harness: Harness) -> None:
    work_request_id = await harness.submit()
    response = await harness.work_requests.Abort(
        pb.AbortRequest(id=work_request_id), metadata=harness.submitter
    )
    assert response.work_request.state == pb.WORK_REQUEST_STATE_ABORTED
    worker = await harness.new_worker()
    await worker.connect()
    await harness.submit("noop", {"result": False})
    assignment = await worker.expect("assignment")
    assert assignment.lease.work_request_id != work_request_id
    await worker.disconnect()


async def test_the_execution_timeout_aborts_and_errors(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    work_request = pb.SubmitRequest(task_name="noop", task_data_json='{"sleep": 60}')
    work_request.timeout.FromMilliseconds(300)
    submitted = await harness.work_requests.Submit(work_request, metadata=harness.submitter)
    lease = (await worker.expect("assignment")).lease
    assert (await worker.expect("abort")).reason == workers_pb2.ABORT_REASON_TIMEOUT
    done = await harness.get(submitted.work_request.id)
    assert (done.state, done.result, done.error.reason) == (
        pb.WORK_REQUEST_STATE_COMPLETED,
        pb.WORK_REQUEST_RESULT_ERROR,
        "timeout",
    )
    worker.completed(lease, workers_pb2.WORK_OUTCOME_ABORTED)
    assert (await worker.expect("ack")).problem.reason == "STALE_LEASE"
    await worker.disconnect()


async def test_a_worker_without_the_task_version_gets_nothing(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect(metadata={"noop:version": 999})
    work_request_id = await harness.submit()
    await asyncio.sleep(0.3)
    assert worker.received.empty()
    explained = await harness.work_requests.Explain(
        pb.ExplainRequest(id=work_request_id), metadata=harness.submitter
    )
    [verdict] = explained.workers
    assert verdict.eligibility == pb.ELIGIBILITY_VERSION_MISMATCH
    assert "version 1" in verdict.detail
    assert "999" in verdict.detail
    assert not explained.runnable
    assert "could run this noop request as it stands" in explained.summary
    await worker.disconnect()


def declined(
    lease: common_pb2.Lease, reason: str = "the worker is stopping"
) -> workers_pb2.WorkReport:
    return workers_pb2.WorkReport(declined=workers_pb2.WorkDeclined(lease=lease, reason=reason))


async def test_a_declined_assignment_waits_again_in_its_place_on_the_same_attempt(
    harness: Harness,
) -> None:
    first = await harness.new_worker("first")
    await first.connect()
    older = await harness.submit()
    lease = (await first.expect("assignment")).lease
    newer = await harness.submit()

    first.report(declined(lease, "no free slot"))
    # The slot it gave back is free again: the declined request, older, comes first.
    again = await first.expect("assignment")
    assert again.lease == lease
    assert (await harness.get(older)).attempt == 1
    assert (await harness.get(newer)).state == pb.WORK_REQUEST_STATE_PENDING
    await first.disconnect()


async def test_a_draining_worker_gets_no_new_work_and_its_declines_go_elsewhere(
    harness: Harness,
) -> None:
    stopping = await harness.new_worker("stopping")
    await stopping.connect(slots=2)
    work_request_id = await harness.submit()
    lease = (await stopping.expect("assignment")).lease

    stopping.send(draining=workers_pb2.Draining())
    stopping.report(declined(lease))
    queued = await harness.wait_for_state(work_request_id, pb.WORK_REQUEST_STATE_PENDING)
    assert (queued.attempt, queued.worker_name) == (1, "")
    later = await harness.submit()
    with pytest.raises(TimeoutError):
        await stopping.expect("assignment", timeout=0.5)

    other = await harness.new_worker("other")
    await other.connect(slots=2)
    leases = {(await other.expect("assignment")).lease.work_request_id for _ in range(2)}
    assert leases == {work_request_id, later}
    assert (await harness.get(work_request_id)).attempt == 1
    await other.disconnect()
    await stopping.disconnect()


async def test_only_an_unstarted_assignment_can_be_declined(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    work_request_id = await harness.submit()
    lease = (await worker.expect("assignment")).lease
    worker.started(lease)
    await harness.wait_for_state(work_request_id, pb.WORK_REQUEST_STATE_RUNNING)

    worker.report(declined(lease))
    ack = await worker.expect("ack")
    assert (ack.kind, ack.problem.reason) == (workers_pb2.REPORT_KIND_DECLINED, "ALREADY_STARTED")
    assert (await harness.get(work_request_id)).state == pb.WORK_REQUEST_STATE_RUNNING
    stale = common_pb2.Lease(work_request_id=work_request_id, attempt=9)
    worker.report(declined(stale))
    assert (await worker.expect("ack")).problem.reason == "STALE_LEASE"
    await worker.disconnect()


@pytest.mark.parametrize("version", [0, 1, 3])
async def test_a_worker_of_another_protocol_is_refused_at_once(
    harness: Harness, version: int
) -> None:
    worker = await harness.new_worker()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await worker.connect(protocol_version=version)  # 0: stubs from before the field
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    failure = rpc_status.from_rpc_error(caught.value)
    assert failure.reason == "PROTOCOL_VERSION_UNSUPPORTED"
    assert failure.metadata == {"scheduler_protocol": "2", "worker_protocol": str(version)}
    assert "protocol 2" in failure.message


async def test_a_scheduler_killed_and_restarted_gives_busy_workers_the_grace_to_come_back(
    tmp_path: Path,
) -> None:
    first = await start_harness(tmp_path, lease_grace=30.0)
    try:
        worker = await first.new_worker()
        await worker.connect()
        work_request_id = await first.submit()
        lease = (await worker.expect("assignment")).lease
        worker.started(lease)
        await first.wait_for_state(work_request_id, pb.WORK_REQUEST_STATE_RUNNING)
        await worker.disconnect()
    finally:
        await stop_harness(first)
    # As a SIGKILL leaves it: the worker last seen long ago by a scheduler now
    # dead, whose maintenance lease has run out.
    store = SqlStore(f"sqlite:///{tmp_path}/taskyard.db")
    with store.transaction() as tx:
        stored = tx.get_worker(worker.name)
        assert stored is not None
        an_hour_ago = tx.now() - timedelta(hours=1)
        tx.replace_worker(dataclasses.replace(stored, scheduler="dead", last_seen_at=an_hour_ago))
    with store.engine.begin() as connection:
        connection.execute(update(leases).values(expires_at=an_hour_ago))
    store.close()
    again = await start_harness(tmp_path, lease_grace=30.0)
    try:
        maintenance = again.running.scheduler.maintenance
        await maintenance.renew()
        assert maintenance.leading  # and it has looked for workers away
        await asyncio.sleep(0.2)  # an expiry due at once would have been committed by now
        assert (await again.get(work_request_id)).state == pb.WORK_REQUEST_STATE_RUNNING
        worker.harness = again
        await worker.connect(running=[lease])
        worker.completed(lease, workers_pb2.WORK_OUTCOME_SUCCESS)
        assert not (await worker.expect("ack")).HasField("problem")
        done = await again.get(work_request_id)
        assert (done.result, done.attempt) == (pb.WORK_REQUEST_RESULT_SUCCESS, 1)
        await worker.disconnect()
    finally:
        await stop_harness(again)
