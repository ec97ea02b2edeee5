"""The messaging part of the storage port, in the batch sizes the worker records (both dialects:
PostgreSQL writes these batches in single statements of its own)."""

from __future__ import annotations

import pytest

from bitbybit.models import Event, Message, StatusReport, Tenant
from bitbybit.store import Store
from tests.contract.test_store import COMPANY_A, LIVE_A, T0, make_company, uid

BATCH = 2_500
"""More than a worker's largest batch: every list is passed whole, whatever its length."""


def make_message(job_id: str | None = None, **changes: object) -> Message:
    message = Message(
        id=uid("msg"),
        direction="out",
        phone="+6281234567890",
        customer_id=None,
        type="text",
        body="hi",
        media_url=None,
        media_id=None,
        template_name=None,
        template_source=None,
        params=[],
        source="sandbox",
        status="accepted",
        error_code=None,
        error_message=None,
        wa_id=None,
        job_id=job_id,
        created_at=T0,
        updated_at=T0,
    )
    for name, value in changes.items():
        setattr(message, name, value)
    return message


@pytest.fixture
async def company(store: Store) -> Store:
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A))
    return store


async def add_messages(store: Store, messages: list[Message], tenant: Tenant = LIVE_A) -> None:
    async with store.write() as tx:
        for message in messages:
            assert await tx.insert_message(tenant, message)


async def test_a_batch_of_messages_is_found_by_its_jobs_and_by_id(company: Store) -> None:
    messages = [make_message(job_id=f"job_{index:05d}") for index in range(BATCH)]
    await add_messages(company, [*messages, make_message(job_id="job_other")])
    wanted = [m.job_id or "" for m in messages]
    async with company.write() as tx:
        found = await tx.messages_of_jobs(wanted)
        locked = await tx.messages_for_update(LIVE_A, [m.id for m in messages])
        elsewhere = await tx.messages_for_update(Tenant(COMPANY_A, "test"), [messages[0].id])
    assert [m.id for _, m in found] == sorted(m.id for m in messages)
    assert {tenant for tenant, _ in found} == {LIVE_A}
    assert [m.id for m in locked] == sorted(m.id for m in messages)
    assert elsewhere == []


async def test_status_history_keeps_the_first_report_of_each_status_once(company: Store) -> None:
    first, second = make_message(), make_message()
    await add_messages(company, [first, second])
    async with company.write() as tx:
        kept = await tx.add_status_reports(
            [
                (first.id, StatusReport("sent", T0 + 1, applied=True)),
                (first.id, StatusReport("sent", T0 + 2, applied=True)),  # the same, again
                (second.id, StatusReport("failed", T0 + 3, 131047, "Re-engagement", True)),
            ],
            T0 + 10,
        )
    assert kept == {(first.id, "sent"), (second.id, "failed")}
    async with company.write() as tx:
        again = await tx.add_status_reports(
            [
                (first.id, StatusReport("sent", T0 + 4, applied=True)),  # reported before
                (first.id, StatusReport("delivered", T0 + 5, applied=False)),
            ],
            T0 + 20,
        )
        history = await tx.status_reports([first.id, second.id])
    assert again == {(first.id, "delivered")}
    assert history == {
        first.id: [
            StatusReport("sent", T0 + 1, applied=True),
            StatusReport("delivered", T0 + 5, applied=False),
        ],
        second.id: [StatusReport("failed", T0 + 3, 131047, "Re-engagement", True)],
    }


async def test_a_large_status_batch_is_kept_whole(company: Store) -> None:
    messages = [make_message() for _ in range(BATCH)]
    await add_messages(company, messages)
    reports = [(m.id, StatusReport("sent", T0 + i, applied=True)) for i, m in enumerate(messages)]
    async with company.write() as tx:
        kept = await tx.add_status_reports(reports, T0)
        history = await tx.status_reports([m.id for m in messages])
    assert kept == {(m.id, "sent") for m in messages}
    assert all(history[m.id] == [report] for m, (_, report) in zip(messages, reports, strict=True))


async def test_statuses_kept_for_unknown_ids_are_taken_once(company: Store) -> None:
    wa_ids = [f"wamid.{index}" for index in range(BATCH)]
    async with company.write() as tx:
        for index, wa_id in enumerate(wa_ids[:3]):
            await tx.keep_unmatched_status(
                COMPANY_A, wa_id, StatusReport("delivered", T0 + index), T0
            )
        await tx.keep_unmatched_status(COMPANY_A, wa_ids[0], StatusReport("read", T0 - 1), T0)
    async with company.write() as tx:
        taken = await tx.take_unmatched_statuses(COMPANY_A, wa_ids)
    # oldest first; not applied yet: they are judged when their message is known
    assert taken == {
        wa_ids[0]: [
            StatusReport("read", T0 - 1, applied=False),
            StatusReport("delivered", T0, applied=False),
        ],
        wa_ids[1]: [StatusReport("delivered", T0 + 1, applied=False)],
        wa_ids[2]: [StatusReport("delivered", T0 + 2, applied=False)],
    }
    async with company.write() as tx:
        assert await tx.take_unmatched_statuses(COMPANY_A, wa_ids) == {}


async def test_a_batch_of_events_reads_back_whole(store: Store) -> None:
    events = [
        Event(uid("evt"), "message.status.updated", b'{"n":%d}' % index, T0 + index)
        for index in range(BATCH)
    ]
    async with store.write() as tx:
        await tx.insert_events(LIVE_A, events)
    async with store.read() as tx:
        found = [await tx.get_event(LIVE_A, event.id) for event in events]
    assert found == events
