"""A token request waits for its audit record's commit on the event loop, not on a worker
thread (issue #21): more requests than worker threads can be waiting for one commit, and
each answer still comes only once its record is durable."""

from __future__ import annotations

import asyncio
import threading
import types
from typing import Any

import pytest

from lab.oauth.errors import InvalidClient
from lab.pdp.core import Pdp
from lab.pdp.store import Store
from lab.pdp.zts.dispatcher import WORKER_THREADS, TokenEndpoint
from tests.pdp.conftest import LEARNER, PdpLab


def test_more_requests_than_worker_threads_wait_for_one_held_commit(world: PdpLab) -> None:
    pdp = Pdp.open(world.settings)
    endpoint = TokenEndpoint(pdp)
    store = pdp.store
    gate = threading.Event()
    held: list[int] = []
    original = Store._commit_audit_batch

    def held_commit(self: Store, batch: list[Any]) -> None:
        held.append(len(batch))
        gate.wait(30)
        original(self, batch)

    store._commit_audit_batch = types.MethodType(held_commit, store)  # type: ignore[method-assign]
    count = WORKER_THREADS + 3
    forms = [
        {
            "grant_type": "client_credentials",
            "scope": "api:role.docs-getter",
            **world.client_assertion(LEARNER),
        }
        for _ in range(count)
    ]
    before = store.audit_last_seq()

    def waiting() -> int:
        with store._audit_queue_ready:
            return sum(held[:1]) + len(store._audit_queue)

    async def run() -> list[Any]:
        tasks = [asyncio.create_task(endpoint.handle_async(form, {})) for form in forms]
        for _ in range(3000):
            if waiting() == count:
                break
            await asyncio.sleep(0.01)
        assert waiting() == count  # every request is past its worker thread, none answered
        assert not any(task.done() for task in tasks)
        assert store.audit_last_seq() == before  # nothing durable yet, so nothing answered
        gate.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(run())
    assert all(result.body["access_token"] for result in results)
    assert store.audit_last_seq() == before + count


def test_the_async_path_refuses_a_replay_like_the_sync_one(world: PdpLab) -> None:
    endpoint = TokenEndpoint(Pdp.open(world.settings))
    form = {
        "grant_type": "client_credentials",
        "scope": "api:role.docs-getter",
        **world.client_assertion(LEARNER),
    }
    assert asyncio.run(endpoint.handle_async(dict(form), {})).body["access_token"]
    with pytest.raises(InvalidClient, match="already been used") as refused:
        asyncio.run(endpoint.handle_async(dict(form), {}))
    assert refused.value.error == "invalid_client"


def test_a_failure_in_the_worker_reaches_the_request_instead_of_hanging_it(
    world: PdpLab,
) -> None:
    endpoint = TokenEndpoint(Pdp.open(world.settings))

    def broken(form: dict[str, str], headers: Any) -> Any:
        raise RuntimeError("grant exploded")

    endpoint.decide = broken  # type: ignore[method-assign]
    form = {"grant_type": "client_credentials", **world.client_assertion(LEARNER)}

    async def run() -> None:
        await asyncio.wait_for(endpoint.handle_async(form, {}), timeout=30)

    with pytest.raises(RuntimeError, match="grant exploded"):
        asyncio.run(run())


def test_a_refusal_is_answered_once_its_deny_record_is_durable(world: PdpLab) -> None:
    pdp = Pdp.open(world.settings)
    endpoint = TokenEndpoint(pdp)
    before = pdp.store.audit_last_seq()
    form = {"grant_type": "client_credentials", "scope": "api:role.nothing-here"}
    form.update(world.client_assertion(LEARNER))

    async def run() -> None:
        await endpoint.handle_async(form, {})

    with pytest.raises(Exception) as refused:
        asyncio.run(run())
    assert getattr(refused.value, "error", None) == "invalid_scope"
    assert pdp.store.audit_last_seq() == before + 1
    record = pdp.store.audit_records(before)[-1]
    assert (record["decision"], record["client"]) == ("deny", LEARNER)


def test_one_commit_wakes_the_event_loop_once_for_all_its_records(tmp_path: Any) -> None:
    from lab.pdp.audit import AuditEvent, AuditLog

    store = Store(tmp_path / "pdp.db")
    log = AuditLog(store)
    wakes: list[Any] = []
    batches: list[int] = []
    original_batch = store._commit_audit_batch

    def counted_batch(batch: list[Any]) -> None:
        batches.append(len(batch))
        original_batch(batch)

    store._commit_audit_batch = counted_batch  # type: ignore[method-assign]

    def event(index: int) -> AuditEvent:
        return AuditEvent(f"c{index}", "ai.agent", LEARNER, "api:docs", "get", True, "test")

    async def run() -> list[Any]:
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == "audit-committer":
                wakes.append(callback)
            return original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        await log.record_async(event(0))  # the committer thread exists from here on
        wakes.clear()
        batches.clear()
        with store._write_lock:  # the next records queue up behind one held commit
            tasks = [asyncio.create_task(log.record_async(event(n))) for n in range(1, 9)]
            for _ in range(20):
                await asyncio.sleep(0.005)
            assert not any(task.done() for task in tasks)
        return await asyncio.gather(*tasks)

    records = asyncio.run(run())
    assert [r["seq"] for r in records] == list(range(2, 10))  # each durable, in order
    assert store.audit_last_seq() == 9
    assert sum(batches) == 8 and len(batches) <= 2  # the committer took one, or all
    assert len(wakes) == len(batches)  # one wake-up of the loop per commit, not per record


def test_the_records_of_one_pass_of_the_loop_reach_the_committer_together(tmp_path: Any) -> None:
    """Requests decided in one pass of the event loop hand their records to the committer in
    one go, in order (one wake-up, one batch), not one by one as each is decided."""
    from lab.pdp.audit import AuditEvent, AuditLog

    store = Store(tmp_path / "pdp.db")
    log = AuditLog(store)
    handed: list[list[str]] = []
    enqueue = store.enqueue_audit

    def counted(appends: Any) -> None:
        handed.append([item.build(0, "")["correlation_id"] for item in appends])
        enqueue(appends)

    store.enqueue_audit = counted  # type: ignore[method-assign]

    def event(index: int) -> AuditEvent:
        return AuditEvent(f"c{index}", "ai.agent", LEARNER, "api:docs", "get", True, "test")

    async def run() -> list[Any]:
        return await asyncio.gather(*(log.record_async(event(n)) for n in range(6)))

    records = asyncio.run(run())
    assert handed == [[f"c{n}" for n in range(6)]]
    assert [r["correlation_id"] for r in records] == [f"c{n}" for n in range(6)]
    assert [r["seq"] for r in records] == list(range(1, 7))
    store.close()


def test_a_store_that_refuses_the_hand_over_fails_its_waiters_instead_of_hanging_them(
    tmp_path: Any,
) -> None:
    from lab.pdp.audit import AuditEvent, AuditLog
    from lab.pdp.store import StoreClosedError

    store = Store(tmp_path / "pdp.db")
    log = AuditLog(store)
    event = AuditEvent("c0", "ai.agent", LEARNER, "api:docs", "get", True, "test")
    asyncio.run(log.record_async(event))
    store.close()

    async def run() -> list[Any]:
        waits = (log.record_async(event) for _ in range(3))
        return await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 10)

    outcomes = asyncio.run(run())
    assert [type(outcome) for outcome in outcomes] == [StoreClosedError] * 3
