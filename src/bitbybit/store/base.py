"""The storage port: what the services ask of a database, in domain terms.

One implementation of the domain methods (``store/sql/``, one module per subject) runs over a
small driver interface; ``store/sqlite.py`` and ``store/postgres.py`` supply the drivers,
transactions and the few statements that differ between dialects. Nothing outside ``store/`` sees
SQL. ``Tx`` is one protocol per subject (the same subjects as the modules of ``store/sql/``), so a
service or a test double can ask for the part it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from bitbybit.models import (
    ApiKey,
    Attempt,
    AttemptResult,
    Company,
    Customer,
    DashboardSession,
    Delivery,
    Endpoint,
    Event,
    Job,
    ListQuery,
    Message,
    Mode,
    Order,
    Page,
    Product,
    QueuedJob,
    QueueStats,
    Recorded,
    SealedSecrets,
    StatusReport,
    StoredResponse,
    SuspensionRule,
    Template,
    Tenant,
    Ticket,
    User,
    Variant,
    WhatsAppNumber,
)


class AccountsTx(Protocol):
    """Companies, API keys, their rate-limit windows and the per-company counters."""

    async def insert_company(self, company: Company) -> None: ...
    async def get_company(self, company_id: str) -> Company | None: ...
    async def list_companies(self) -> list[Company]:
        """Every company, oldest first (the operator's ``bitbybit companies list``)."""
        ...

    async def insert_api_key(self, key: ApiKey, key_hash: str) -> None: ...
    async def find_api_key(self, key_hash: str) -> ApiKey | None: ...
    async def get_api_key(self, key_id: str) -> ApiKey | None: ...
    async def list_api_keys(self, company_id: str) -> list[ApiKey]: ...
    async def set_api_key_allowlist(
        self, key_id: str, allowlist: tuple[str, ...], labels: dict[str, str]
    ) -> None: ...
    async def expire_api_key(self, key_id: str, expires_at: int) -> None: ...
    async def revoke_api_key(self, key_id: str, revoked_at: int) -> None: ...
    async def count_request(self, key_id: str, window_start: int) -> int: ...
    async def next_counter(self, tenant: Tenant, name: str) -> int: ...


class IdempotencyTx(Protocol):
    """Stored responses of idempotent requests."""

    async def get_stored_response(self, tenant: Tenant, key: str) -> StoredResponse | None: ...
    async def store_response(self, tenant: Tenant, key: str, response: StoredResponse) -> None: ...
    async def finish_stored_response(
        self, tenant: Tenant, key: str, status_code: int, body: bytes
    ) -> None: ...
    async def delete_stored_response(self, tenant: Tenant, key: str) -> None: ...
    async def prune_stored_responses(self, created_before: int, limit: int) -> int:
        """Delete at most ``limit`` stored responses created before ``created_before``, oldest
        first, across every company; returns how many went. A bounded batch, so one pass over
        a large backlog never holds the write lock for long."""
        ...


class CustomersTx(Protocol):
    """Customers."""

    async def insert_customer(self, tenant: Tenant, customer: Customer) -> None: ...
    async def update_customer(self, tenant: Tenant, customer: Customer) -> None: ...
    async def get_customer(self, tenant: Tenant, customer_id: str) -> Customer | None: ...
    async def find_customer(
        self, tenant: Tenant, *, email: str | None = None, phone_number: str | None = None
    ) -> Customer | None: ...
    async def delete_customer(self, tenant: Tenant, customer_id: str) -> bool: ...
    async def list_customers(self, tenant: Tenant, query: ListQuery) -> Page: ...


class ProductsTx(Protocol):
    """Products and their variants."""

    async def insert_product(self, tenant: Tenant, product: Product) -> None: ...
    async def update_product(self, tenant: Tenant, product: Product) -> None: ...
    async def get_product(self, tenant: Tenant, product_id: str) -> Product | None: ...
    async def delete_product(self, tenant: Tenant, product_id: str) -> bool: ...
    async def list_products(self, tenant: Tenant, query: ListQuery) -> Page: ...
    async def get_variants(
        self, tenant: Tenant, variant_ids: Sequence[str]
    ) -> dict[str, tuple[Variant, str]]:
        """Variants by id, each with its product's name."""
        ...


class OrdersTx(Protocol):
    """Orders."""

    async def insert_order(self, tenant: Tenant, order: Order) -> None: ...
    async def update_order(self, tenant: Tenant, order: Order) -> None: ...
    async def get_order(self, tenant: Tenant, order_id: str) -> Order | None: ...
    async def list_orders(self, tenant: Tenant, query: ListQuery) -> Page: ...


class EventsTx(Protocol):
    """Events: the transactional outbox, written in the transaction of the change they announce."""

    async def insert_event(self, tenant: Tenant, event: Event) -> None: ...
    async def insert_events(self, tenant: Tenant, events: Sequence[Event]) -> None: ...
    async def get_event(self, tenant: Tenant, event_id: str, *, lock: bool = False) -> Event | None:
        """The tenant's event; with ``lock`` it is kept from being removed (by retention) until
        this transaction ends, and one being removed is waited for and then not found."""
        ...

    async def list_events(self, tenant: Tenant, query: ListQuery) -> Page:
        """A page of the tenant's events in the Open API's order (newest first: by creation
        time, then the order they were written), and the exact count of all that match. The
        count reads an index alone; the rows ``OFFSET`` skips are found by their place alone."""
        ...

    async def event_position(self, tenant: Tenant, event_id: str) -> tuple[int, int] | None:
        """Where the tenant's event ``event_id`` stands in the Open API's order (an opaque
        place for ``events_from``), or ``None`` if the tenant has no such event."""
        ...

    async def events_from(
        self,
        tenant: Tenant,
        *,
        types: tuple[str, ...] = (),
        since: int | None = None,
        until: int | None = None,
        before: tuple[int, int] | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 20,
    ) -> tuple[list[Event], bool]:
        """Up to ``limit`` events in ``list_events``'s order, of one of ``types`` (any when
        empty) created in ``[since, until]`` (both inclusive, as ``list_events``), and whether
        there are more beyond them: the newest, the ones just older than the place ``before`` or
        the ones just newer than ``after`` (more: newer still), each from ``event_position``.
        No count, no offset."""
        ...

    async def event_history(
        self,
        tenant: Tenant,
        *,
        event_type: str | None = None,
        before: tuple[int, str] | None = None,
        after: tuple[int, str] | None = None,
        limit: int = 50,
    ) -> tuple[list[Event], bool]:
        """Up to ``limit`` events (of ``event_type``), newest first, and whether there are
        more beyond them: by keyset on ``(created_at, id)``, the ones older than ``before`` or
        the ones just newer than ``after`` (more: newer still); no count, no offset."""
        ...


class EndpointsTx(Protocol):
    """Webhook endpoints and their sealed (encrypted) signing secrets."""

    async def insert_endpoint(self, tenant: Tenant, endpoint: Endpoint) -> None: ...
    async def update_endpoint(self, tenant: Tenant, endpoint: Endpoint) -> None: ...
    async def get_endpoint(
        self, tenant: Tenant, endpoint_id: str, *, lock: bool = False
    ) -> Endpoint | None:
        """The endpoint; with ``lock``, kept from being changed by another transaction (the
        worker suspending it, counting its failures) until this one ends, for a change made
        from what was read here."""
        ...

    async def list_endpoints(self, tenant: Tenant) -> list[Endpoint]: ...
    async def fan_out_targets(self, tenant: Tenant) -> list[Endpoint]:
        """The endpoints, as ``list_endpoints``, kept from being deleted until this transaction
        ends, so the deliveries it queues for them cannot race a concurrent delete."""
        ...

    async def count_endpoints(self, company_id: str) -> int: ...
    async def delete_endpoint(self, tenant: Tenant, endpoint_id: str) -> bool: ...
    async def hold_pending(self, endpoint_id: str, now: int) -> int:
        """Hold the endpoint's pending deliveries (it was just suspended or disabled in this
        transaction), those of fan-outs that read it active and have not yet committed
        included: it waits for them (``lock_endpoints``)."""
        ...

    async def lock_endpoints(self, endpoint_ids: Sequence[str]) -> None:
        """Wait for the transactions fanning events out to these endpoints, and keep new ones
        waiting until this transaction ends (PostgreSQL ``FOR UPDATE``, in the fan-out's
        order; nothing on SQLite, whose writers take turns)."""
        ...

    async def sample_sealed_secrets(self, limit: int) -> list[SealedSecrets]:
        """The stored secrets of the ``limit`` endpoints changed last and the ``limit`` created
        first, across every company (to check the secret key against)."""
        ...

    async def page_sealed_secrets(self, after: str, limit: int) -> list[SealedSecrets]:
        """The stored secrets of up to ``limit`` endpoints whose id sorts after ``after``."""
        ...

    async def reseal_secret(self, endpoint_id: str, old: str, new: str) -> bool:
        """Replace the stored secret ``old`` (current or rotated-to) of the endpoint by ``new``,
        the same secret encrypted afresh; False if ``old`` was no longer stored."""
        ...

    async def endpoint_health(
        self, tenant: Tenant, endpoint_ids: Sequence[str], since: int
    ) -> dict[str, tuple[int, int, Attempt | None]]:
        """Per endpoint of ``endpoint_ids`` with an attempt started at ``since`` or later: how
        many attempts its deliveries had since then, how many of them succeeded (2xx, no
        error), and the latest of them (without its response body). One query, grouped by
        endpoint; endpoints without such attempts are absent."""
        ...


class DeliveriesTx(Protocol):
    """Deliveries as the API sees them: queued by the outbox, listed, retried by hand, recovered."""

    async def queue_deliveries(
        self, tenant: Tenant, event: Event, endpoints: list[Endpoint], now: int
    ) -> list[str]: ...
    async def get_delivery(self, tenant: Tenant, delivery_id: str) -> Delivery | None: ...
    async def list_deliveries(
        self,
        tenant: Tenant,
        *,
        endpoint_id: str | None = None,
        event_id: str | None = None,
        statuses: tuple[str, ...] = (),
        page: int = 1,
        limit: int = 100,
    ) -> Page:
        """A page of the tenant's deliveries (of the endpoint, of the event, in one of
        ``statuses``), newest first by ``(created_at, id)``, and the exact count of all that
        match. With ``endpoint_id`` the count and the rows ``OFFSET`` skips read the endpoint's
        index alone."""
        ...

    async def delivery_position(
        self, tenant: Tenant, delivery_id: str, *, endpoint_id: str | None = None
    ) -> tuple[int, str] | None:
        """``(created_at, id)`` of the tenant's delivery ``delivery_id`` (of ``endpoint_id``
        when given): its place for ``delivery_history``; ``None`` if there is no such one."""
        ...

    async def delivery_history(
        self,
        tenant: Tenant,
        *,
        endpoint_id: str | None = None,
        event_type: str | None = None,
        statuses: tuple[str, ...] = (),
        since: int | None = None,
        until: int | None = None,
        before: tuple[int, str] | None = None,
        after: tuple[int, str] | None = None,
        limit: int = 50,
    ) -> tuple[list[Delivery], bool]:
        """Up to ``limit`` deliveries, newest first, created in ``[since, until)`` and matching
        every filter given, and whether there are more beyond them: by keyset on
        ``(created_at, id)``, the ones older than ``before`` or the ones just newer than
        ``after`` (more: newer still). No count, no offset: on PostgreSQL each page reads
        about a page's worth of index entries whatever the company's size."""
        ...

    async def delivery_chart(
        self, tenant: Tenant, since: int, until: int
    ) -> list[tuple[int, int, int]]:
        """Per minute with deliveries created in ``[since, until)``: (the minute's start in
        ms, deliveries created, how many of them are failing: failed, or their last attempt
        failed), oldest first."""
        ...

    async def list_attempts(self, delivery_id: str) -> list[Attempt]: ...
    async def requeue(self, delivery_ids: Sequence[str], now: int) -> int: ...
    async def recoverable(self, endpoint_id: str, since: int | None) -> list[str]: ...
    async def count_deliveries(self, status: str) -> int:
        """Deliveries in ``status`` across every company (operations, benchmarks)."""
        ...


class JobsTx(Protocol):
    """Jobs of channels other than webhooks: enqueued here, then claimed, leased, retried and
    recorded by the shared queue (ADR 0008)."""

    async def enqueue_job(
        self,
        tenant: Tenant,
        kind: str,
        target: str,
        payload: bytes,
        now: int,
        due_at: int | None = None,
    ) -> str:
        """Queue a ``kind`` job for ``target``, due at ``due_at`` (default: now); returns its
        id (``job_…``)."""
        ...

    async def enqueue_jobs(
        self,
        tenant: Tenant,
        kind: str,
        target: str,
        payloads: Sequence[tuple[bytes, int]],
        now: int,
    ) -> list[str]:
        """Queue a ``kind`` job for ``target`` per (payload, due at); returns their ids."""
        ...

    async def get_job(self, tenant: Tenant, job_id: str) -> QueuedJob | None: ...
    async def list_job_attempts(self, job_id: str) -> list[Attempt]: ...


class QueueTx(Protocol):
    """The delivery worker's side of the queue, shared by every kind of job: which targets have
    work, leases, attempts."""

    async def due_targets(self, now: int) -> list[str]: ...
    async def release(self, owner: str, jobs: Sequence[Job], now: int) -> None: ...
    async def record_attempts(
        self, owner: str, results: Sequence[AttemptResult], now: int, rule: SuspensionRule
    ) -> Recorded:
        """Record attempts and their outcomes; the results of deliveries that no longer exist
        are skipped (and named in the answer), never an error."""
        ...

    async def queue_stats(self, now: int) -> QueueStats: ...
    async def queue_stats_by_target(self, limit: int) -> list[tuple[str, int, int | None]]:
        """``(target, pending, oldest created at)`` for the ``limit`` targets with the most
        pending jobs (due or not), most first; targets with none are absent. The oldest is the
        creation time (ms) of the target's oldest pending job, ``None`` if unknown."""
        ...


class MessagingTx(Protocol):
    """WhatsApp messaging: connected numbers, templates, tickets, messages and their statuses."""

    async def put_whatsapp_number(self, number: WhatsAppNumber) -> None: ...
    async def get_whatsapp_number(self, company_id: str, source: str) -> WhatsAppNumber | None: ...
    async def list_whatsapp_numbers(self, company_id: str) -> list[WhatsAppNumber]: ...
    async def route_whatsapp_numbers(
        self, phone_number_ids: Sequence[str], waba_ids: Sequence[str]
    ) -> list[WhatsAppNumber]: ...
    async def find_whatsapp_number_by_verify_token(
        self, verify_token_hash: str
    ) -> WhatsAppNumber | None: ...
    async def page_whatsapp_numbers(self, after: str, limit: int) -> list[WhatsAppNumber]:
        """Up to ``limit`` numbers whose phone-number id sorts after ``after``, every
        company's."""
        ...

    async def reseal_whatsapp_number(
        self, phone_number_id: str, old: tuple[str, str], new: tuple[str, str]
    ) -> bool:
        """Replace the sealed (access token, app secret) ``old`` by ``new``; False if they
        were changed meanwhile."""
        ...

    async def insert_template(self, tenant: Tenant, template: Template) -> None: ...
    async def update_template(self, tenant: Tenant, template: Template) -> None: ...
    async def get_template(self, tenant: Tenant, name: str) -> Template | None: ...
    async def delete_template(self, tenant: Tenant, name: str) -> bool: ...
    async def list_templates(self, tenant: Tenant, page: int, limit: int) -> Page: ...
    async def insert_ticket(self, tenant: Tenant, ticket: Ticket) -> None: ...
    async def get_ticket(self, tenant: Tenant, ticket_id: str) -> Ticket | None: ...
    async def open_ticket_of(self, tenant: Tenant, customer_id: str) -> Ticket | None: ...
    async def close_ticket(self, tenant: Tenant, ticket_id: str, now: int) -> bool: ...
    async def list_tickets(
        self,
        tenant: Tenant,
        *,
        status: str | None = None,
        customer_id: str | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> Page: ...
    async def insert_message(self, tenant: Tenant, message: Message) -> bool:
        """Store ``message``; False (nothing stored) when the company already has a message
        with its WhatsApp id (a repeated callback)."""
        ...

    async def get_message(self, tenant: Tenant, message_id: str) -> Message | None: ...
    async def find_message_by_wa_id(self, tenant: Tenant, wa_id: str) -> Message | None:
        """The message with this WhatsApp id, locked for a change of status; takes turns
        with ``take_unmatched_statuses`` on the id."""
        ...

    async def messages_of_jobs(self, job_ids: Sequence[str]) -> list[tuple[Tenant, Message]]:
        """The messages these jobs send, locked for a change of status."""
        ...

    async def messages_for_update(
        self, tenant: Tenant, message_ids: Sequence[str]
    ) -> list[Message]: ...
    async def update_messages(self, changed: Sequence[tuple[Tenant, Message]]) -> None: ...
    async def add_status_reports(
        self, reports: Sequence[tuple[str, StatusReport]], recorded_at: int
    ) -> set[tuple[str, str]]:
        """Keep each (message id, report) in its message's history; returns the (message id,
        status) pairs kept: a status reported before is not kept again."""
        ...

    async def keep_unmatched_status(
        self, company_id: str, wa_id: str, report: StatusReport, recorded_at: int
    ) -> None:
        """Keep a status reported for a WhatsApp id no message has (yet)."""
        ...

    async def take_unmatched_statuses(
        self, company_id: str, wa_ids: Sequence[str]
    ) -> dict[str, list[StatusReport]]:
        """The statuses kept for these WhatsApp ids, each id's oldest first; removed."""
        ...

    async def status_reports(self, message_ids: Sequence[str]) -> dict[str, list[StatusReport]]: ...
    async def last_inbound_at(self, tenant: Tenant, phone: str) -> int | None: ...
    async def list_messages(
        self,
        tenant: Tenant,
        *,
        phone: str | None = None,
        direction: str | None = None,
        message_id: str | None = None,
        template_name: str | None = None,
        since: int | None = None,
        until: int | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> Page: ...
    async def list_conversations(
        self, tenant: Tenant, *, search: str | None = None, page: int = 1, limit: int = 20
    ) -> Page:
        """The tenant's conversations, one per phone number, latest activity first. Each item
        is ``(last message, last inbound time or None, customer with the number or None)``;
        ``search`` matches the customer's name, email or number, or (digits alone) part of the
        number."""
        ...


class UsersTx(Protocol):
    """Dashboard users and their sessions, found by the SHA-256 of the cookie's token."""

    async def insert_user(self, user: User, password_hash: str) -> None: ...
    async def find_user(self, email: str) -> tuple[User, str] | None:
        """The user with this (lower-cased) email and their password hash."""
        ...

    async def list_users(self, company_id: str) -> list[User]: ...
    async def set_password_hash(self, user_id: str, password_hash: str, now: int) -> None: ...
    async def insert_session(self, token_hash: str, session: DashboardSession) -> None: ...
    async def get_session(self, token_hash: str) -> DashboardSession | None: ...
    async def touch_session(self, token_hash: str, now: int, mode: Mode | None = None) -> None:
        """Note a use of the session (and switch the mode it shows)."""
        ...

    async def revoke_session(self, token_hash: str, now: int) -> None: ...
    async def revoke_user_sessions(self, user_id: str, now: int) -> int: ...
    async def prune_sessions(self, now: int, idle_before: int, limit: int) -> int: ...


@dataclass(slots=True)
class Dropped:
    """What dropping old week partitions did (``Store.drop_partitions``, PostgreSQL): the weeks
    dropped (``p20261130``, ``legacy``), and the weeks old enough that something in them keeps
    them, each with the reason (the batched sweep thins those)."""

    weeks: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    leave: tuple[str, int] | None = None
    """What the batched sweep leaves to a later drop: events whose id is at least the first
    text (the legacy partition's end: ids of the week partitions) created at or after the time
    (the start of the week of the cutoff). That week goes whole once it is past the cutoff;
    deleted row by row meanwhile, it would be empty by then. ``None``: leave nothing (SQLite)."""


@dataclass(frozen=True, slots=True)
class Swept:
    """One batch of retention (``RetentionTx``): the rows removed, per table, and where the
    next batch goes on from."""

    removed: Mapping[str, int] = field(default_factory=dict)
    """Rows removed per table (``events``, ``deliveries``, ``delivery_attempts``, ``jobs``,
    ``job_attempts``); a table with none may be absent."""
    last: tuple[int, str] | None = None
    """``(created_at, id)`` of the last row looked at, kept or removed (``None``: none was)."""
    more: bool = False
    """As many rows were looked at as the batch allows: there may be more before the cutoff."""


class RetentionTx(Protocol):
    """What retention removes, a bounded batch per transaction (``services.retention``): old
    events with their deliveries and attempts, old settled jobs of other channels with theirs;
    and the export of events an operator takes before they go.

    Work in flight is never removed: an event stays while any of its deliveries is pending
    (queued) or held, or was attempted or changed at or after the cutoff; a job stays while it
    is pending (queued) or was attempted at or after the cutoff. Every batch checks this again
    under row locks (PostgreSQL: rows another transaction holds are skipped for this run), so a
    delivery retried or replayed while the batch runs is kept."""

    async def sweep_events(
        self,
        tenant: Tenant,
        cutoff: int,
        after: tuple[int, str] | None,
        limit: int,
        leave: tuple[str, int] | None = None,
    ) -> Swept:
        """Look at up to ``limit`` of the tenant's events created before ``cutoff`` (oldest
        first, those after ``after`` in ``(created_at, id)`` order) and remove the ones
        nothing keeps, with their deliveries and the deliveries' attempts; those ``leave``
        names (``Dropped.leave``) are not looked at."""
        ...

    async def sweep_jobs(self, cutoff: int, after: tuple[int, str] | None, limit: int) -> Swept:
        """Look at up to ``limit`` jobs (of every company) created before ``cutoff``, oldest
        first after ``after``, and remove the settled ones with their attempts. Messages that
        name a removed job keep their content and status (``job_id`` is not a reference)."""
        ...

    async def export_events(
        self,
        tenant: Tenant,
        since: int,
        until: int | None,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[Event]:
        """Up to ``limit`` of the tenant's events created in ``[since, until)`` (no upper bound
        for ``None``), oldest first by ``(created_at, id)``, those after ``after``: one page of
        an export; no count, no offset."""
        ...


class Tx(
    AccountsTx,
    IdempotencyTx,
    CustomersTx,
    ProductsTx,
    OrdersTx,
    EventsTx,
    EndpointsTx,
    DeliveriesTx,
    JobsTx,
    QueueTx,
    MessagingTx,
    UsersTx,
    RetentionTx,
    Protocol,
):
    """One transaction. Leaving the ``write()`` block normally commits, an exception rolls back."""


class Store(Protocol):
    dialect: str
    on_deliveries: list[Callable[[frozenset[str] | None], None]]
    """Called after a commit that made deliveries pending (wakes in-process workers), with the
    endpoints they are for (``None`` when that is not known)."""
    on_endpoints_changed: list[Callable[[frozenset[str]], None]]
    """Called after a commit that changed, suspended or deleted endpoints, with their ids."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def write(self, *, durable: bool = True) -> AbstractAsyncContextManager[Tx]:
        """A read-write transaction.

        ``durable=False`` lets the commit return before it is on disk (PostgreSQL
        ``synchronous_commit = off``): for the delivery worker's leases and attempt records,
        whose loss in a database crash only means a delivery is sent again, never lost.
        """
        ...

    def read(self, *, snapshot: bool = False) -> AbstractAsyncContextManager[Tx]:
        """A read-only view; never writes. With ``snapshot`` every statement sees the same
        instant (a list's ``total`` and its rows agree); without it PostgreSQL runs each
        statement on its own (one round trip fewer each way), SQLite gives a snapshot anyway."""
        ...

    async def ping(self, within: float) -> None:
        """Check that the database answers a trivial read within ``within`` seconds (the
        readiness probe); raise ``StorageUnavailable`` if it does not."""
        ...

    async def queue_gauges(
        self, now: int, shown: int
    ) -> tuple[QueueStats, list[tuple[str, int, int | None]]]:
        """``queue_stats(now)`` and ``queue_stats_by_target(shown)``, read together for the
        operator's gauges. Both read the whole queue, which may hold millions of jobs: SQLite
        reads them on a connection and thread of their own, so the event loop (the API's, the
        worker's sending) never waits for them; PostgreSQL in a read of the pool."""
        ...

    async def claim_due(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[Job]:
        """Lease up to ``slots[endpoint]`` due deliveries of each endpoint to ``owner`` until
        ``lease_until`` and return them, oldest due first; deliveries other workers hold are
        skipped, not waited for. Its own step, not durable (a lease lost in a database crash
        only means the delivery is claimed again)."""
        ...

    async def count_key_request(
        self, key_hash: str, window_start: int
    ) -> tuple[ApiKey, int] | None:
        """The key with this hash and the requests made with it in the window starting at
        ``window_start``, this one counted; ``None`` (nothing counted) when no key has the hash.
        An unknown hash writes nothing: on SQLite it is looked up without taking the write lock,
        on PostgreSQL the statement's insert has no row to insert.

        Its own step, outside any transaction of the caller's, and not durable: it runs before
        every API request, and a count lost in a database crash only gives a key a few more
        requests. (PostgreSQL: one statement, so the counter's row is locked for the statement
        alone, not across round trips to a busy client.)
        """
        ...

    def exclusively(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Whether this process may run the periodic job ``name`` alone while the block runs:
        on PostgreSQL a session advisory lock (``pg_try_advisory_lock``, on a connection of its
        own, per schema), False at once when another process holds it, released when the block
        ends or the process dies; on SQLite always True (its writers take turns anyway)."""
        ...

    async def migrate(self, target: int | None = None) -> list[str]:
        """Apply pending migrations (up to version ``target``); returns the names applied."""
        ...

    async def make_partitions(self, now: int, ahead: int) -> list[str]:
        """PostgreSQL: create the history tables' week partitions of this week and the next
        ``ahead`` weeks that are missing (``store.partitions``); the weeks made. SQLite, which
        does not partition: nothing."""
        ...

    async def drop_partitions(self, cutoff: int) -> Dropped:
        """PostgreSQL: drop, oldest first, the week partitions that end by ``cutoff`` and hold
        nothing retention must keep (``store.partitions.keeps``); a week whose tables stay busy
        for ``partitions.LOCK_TIMEOUT_MS`` is left for the next run. SQLite: nothing."""
        ...

    async def default_partition_rows(self, cap: int) -> dict[str, int]:
        """PostgreSQL: the rows in each history table's default partition, counted up to
        ``cap`` (there should be none). SQLite: an empty dict."""
        ...

    async def fold_counts(self) -> int:
        """PostgreSQL: move the kept counts' changes into the counts, a row a key
        (``store.sql.counts.fold``; the workers do it every few seconds, so a total sums a few
        rows); the changes moved. SQLite, which keeps no counts: 0."""
        ...

    async def schema_version(self) -> int: ...
    async def describe_schema(self) -> dict[str, list[str]]:
        """Tables, columns and indexes in a comparable form (for the migration tests)."""
        ...
