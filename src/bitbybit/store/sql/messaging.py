"""WhatsApp messaging: connected numbers, templates, tickets, messages and their statuses."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from typing import Any

import orjson

from bitbybit.models import (
    Message,
    Page,
    StatusReport,
    Template,
    Tenant,
    Ticket,
    WhatsAppNumber,
)
from bitbybit.store.sql.customers import _customer
from bitbybit.store.sql.driver import Driver, Row, _dumps, _in, _Where, like_pattern


def _number(row: Row) -> WhatsAppNumber:
    return WhatsAppNumber(
        phone_number_id=row["phone_number_id"],
        company_id=row["company_id"],
        source=row["source"],
        waba_id=row["waba_id"],
        access_token=row["access_token"],
        app_secret=row["app_secret"],
        verify_token_hash=row["verify_token_hash"],
        pace=None if row["pace"] is None else float(row["pace"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _template(row: Row) -> Template:
    return Template(
        name=row["name"],
        source=row["source"],
        language=row["language"],
        body=row["body"],
        header_media_url=row["header_media_url"],
        param_count=row["param_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _ticket(row: Row) -> Ticket:
    return Ticket(
        id=row["id"],
        customer_id=row["customer_id"],
        status=row["status"],
        opened_at=row["opened_at"],
        closed_at=row["closed_at"],
        updated_at=row["updated_at"],
    )


def _message(row: Row) -> Message:
    return Message(
        id=row["id"],
        direction=row["direction"],
        phone=row["phone"],
        customer_id=row["customer_id"],
        type=row["type"],
        body=row["body"],
        media_url=row["media_url"],
        media_id=row["media_id"],
        template_name=row["template_name"],
        template_source=row["template_source"],
        params=orjson.loads(row["params"]) if row["params"] else [],
        source=row["source"],
        status=row["status"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        wa_id=row["wa_id"],
        job_id=row["job_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_NUMBER_COLUMNS = (
    "phone_number_id, company_id, source, waba_id, access_token, app_secret,"
    " verify_token_hash, pace, created_at, updated_at"
)
_TEMPLATE_COLUMNS = (
    "name, source, language, body, header_media_url, param_count, created_at, updated_at"
)
_TICKET_COLUMNS = "id, customer_id, status, opened_at, closed_at, updated_at"
_MESSAGE_COLUMNS = (
    "id, direction, phone, customer_id, type, body, media_url, media_id, template_name,"
    " template_source, params, source, status, error_code, error_message, wa_id, job_id,"
    " created_at, updated_at"
)

_CUSTOMER_FIELDS = (
    "id",
    "email",
    "phone_number",
    "first_name",
    "last_name",
    "image_url",
    "tags",
    "addresses",
    "source",
    "created_at",
    "updated_at",
)
_CONVERSATIONS = (
    "convo AS (SELECT phone, MAX(created_at) AS last_at"
    " FROM messages WHERE company_id = $1 AND mode = $2 GROUP BY phone)"
)
"""Each number the tenant has messages with and the time of its latest message (an index-only
scan of ``messages_conversation``)."""
_WITH_CUSTOMER = (
    "convo LEFT JOIN customers c"
    " ON c.company_id = $1 AND c.mode = $2 AND c.phone_number = convo.phone"
)
_LAST_INBOUND = (
    "(SELECT MAX(inbound.created_at) FROM messages inbound WHERE inbound.company_id = $1"
    " AND inbound.mode = $2 AND inbound.phone = found.convo_phone AND inbound.direction = 'in')"
)
"""When the customer of ``found.convo_phone`` last wrote (their service window opens then)."""
_LAST_MESSAGE = (
    "(SELECT latest.id FROM messages latest WHERE latest.company_id = $1 AND latest.mode = $2"
    " AND latest.phone = found.convo_phone ORDER BY latest.created_at DESC, latest.id DESC"
    " LIMIT 1)"
)
"""The id of the last message of the conversation ``found.convo_phone`` (by the
``messages_conversation`` index)."""


class MessagingSql:
    """Implements ``store.base.MessagingTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver

    # -- numbers -----------------------------------------------------------------------------

    async def put_whatsapp_number(self, number: WhatsAppNumber) -> None:
        """Connect ``number``, replacing the company's number of the same source (and the
        number's earlier connection, to whichever company)."""
        await self.db.execute(
            "DELETE FROM whatsapp_numbers WHERE phone_number_id = $1"
            " OR (company_id = $2 AND source = $3)",
            number.phone_number_id,
            number.company_id,
            number.source,
        )
        await self.db.execute(
            f"INSERT INTO whatsapp_numbers ({_NUMBER_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            number.phone_number_id,
            number.company_id,
            number.source,
            number.waba_id,
            number.access_token,
            number.app_secret,
            number.verify_token_hash,
            number.pace,
            number.created_at,
            number.updated_at,
        )

    async def get_whatsapp_number(self, company_id: str, source: str) -> WhatsAppNumber | None:
        row = await self.db.fetchrow(
            f"SELECT {_NUMBER_COLUMNS} FROM whatsapp_numbers WHERE company_id = $1 AND source = $2",
            company_id,
            source,
        )
        return None if row is None else _number(row)

    async def list_whatsapp_numbers(self, company_id: str) -> list[WhatsAppNumber]:
        rows = await self.db.fetch(
            f"SELECT {_NUMBER_COLUMNS} FROM whatsapp_numbers WHERE company_id = $1 ORDER BY source",
            company_id,
        )
        return [_number(row) for row in rows]

    async def route_whatsapp_numbers(
        self, phone_number_ids: Sequence[str], waba_ids: Sequence[str]
    ) -> list[WhatsAppNumber]:
        """The numbers with these ids, and the numbers of these business accounts."""
        conditions = []
        args: list[str] = []
        if phone_number_ids:
            conditions.append(f"phone_number_id IN ({_in(1, len(phone_number_ids))})")
            args.extend(phone_number_ids)
        if waba_ids:
            conditions.append(f"waba_id IN ({_in(len(args) + 1, len(waba_ids))})")
            args.extend(waba_ids)
        if not conditions:
            return []
        rows = await self.db.fetch(
            f"SELECT {_NUMBER_COLUMNS} FROM whatsapp_numbers WHERE {' OR '.join(conditions)}",
            *args,
        )
        return [_number(row) for row in rows]

    async def page_whatsapp_numbers(self, after: str, limit: int) -> list[WhatsAppNumber]:
        """Up to ``limit`` numbers whose phone-number id sorts after ``after``, every company's
        (to check and rotate the secret key)."""
        rows = await self.db.fetch(
            f"SELECT {_NUMBER_COLUMNS} FROM whatsapp_numbers WHERE phone_number_id > $1"
            " ORDER BY phone_number_id LIMIT $2",
            after,
            limit,
        )
        return [_number(row) for row in rows]

    async def reseal_whatsapp_number(
        self, phone_number_id: str, old: tuple[str, str], new: tuple[str, str]
    ) -> bool:
        """Replace the sealed access token and app secret ``old`` by ``new`` (the same values
        encrypted afresh); False if they were changed meanwhile."""
        touched = await self.db.execute(
            "UPDATE whatsapp_numbers SET access_token = $4, app_secret = $5"
            " WHERE phone_number_id = $1 AND access_token = $2 AND app_secret = $3",
            phone_number_id,
            *old,
            *new,
        )
        return touched > 0

    async def find_whatsapp_number_by_verify_token(
        self, verify_token_hash: str
    ) -> WhatsAppNumber | None:
        row = await self.db.fetchrow(
            f"SELECT {_NUMBER_COLUMNS} FROM whatsapp_numbers WHERE verify_token_hash = $1 LIMIT 1",
            verify_token_hash,
        )
        return None if row is None else _number(row)

    # -- templates ---------------------------------------------------------------------------

    async def insert_template(self, tenant: Tenant, template: Template) -> None:
        await self.db.execute(
            f"INSERT INTO templates (company_id, mode, {_TEMPLATE_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            tenant.company_id,
            tenant.mode,
            template.name,
            template.source,
            template.language,
            template.body,
            template.header_media_url,
            template.param_count,
            template.created_at,
            template.updated_at,
        )

    async def update_template(self, tenant: Tenant, template: Template) -> None:
        await self.db.execute(
            "UPDATE templates SET source = $4, language = $5, body = $6, header_media_url = $7,"
            " param_count = $8, updated_at = $9"
            " WHERE company_id = $1 AND mode = $2 AND name = $3",
            tenant.company_id,
            tenant.mode,
            template.name,
            template.source,
            template.language,
            template.body,
            template.header_media_url,
            template.param_count,
            template.updated_at,
        )

    async def get_template(self, tenant: Tenant, name: str) -> Template | None:
        row = await self.db.fetchrow(
            f"SELECT {_TEMPLATE_COLUMNS} FROM templates"
            " WHERE company_id = $1 AND mode = $2 AND name = $3",
            tenant.company_id,
            tenant.mode,
            name,
        )
        return None if row is None else _template(row)

    async def delete_template(self, tenant: Tenant, name: str) -> bool:
        deleted = await self.db.execute(
            "DELETE FROM templates WHERE company_id = $1 AND mode = $2 AND name = $3",
            tenant.company_id,
            tenant.mode,
            name,
        )
        return deleted > 0

    async def list_templates(self, tenant: Tenant, page: int, limit: int) -> Page:
        where = _Where(tenant)
        return await self._paged(
            "templates", _TEMPLATE_COLUMNS, where, "name", page, limit, _template
        )

    # -- tickets -----------------------------------------------------------------------------

    async def insert_ticket(self, tenant: Tenant, ticket: Ticket) -> None:
        await self.db.execute(
            f"INSERT INTO tickets (company_id, mode, {_TICKET_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            tenant.company_id,
            tenant.mode,
            ticket.id,
            ticket.customer_id,
            ticket.status,
            ticket.opened_at,
            ticket.closed_at,
            ticket.updated_at,
        )

    async def get_ticket(self, tenant: Tenant, ticket_id: str) -> Ticket | None:
        row = await self.db.fetchrow(
            f"SELECT {_TICKET_COLUMNS} FROM tickets"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            ticket_id,
        )
        return None if row is None else _ticket(row)

    async def open_ticket_of(self, tenant: Tenant, customer_id: str) -> Ticket | None:
        row = await self.db.fetchrow(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE customer_id = $3"
            " AND status = 'open' AND company_id = $1 AND mode = $2",
            tenant.company_id,
            tenant.mode,
            customer_id,
        )
        return None if row is None else _ticket(row)

    async def close_ticket(self, tenant: Tenant, ticket_id: str, now: int) -> bool:
        closed = await self.db.execute(
            "UPDATE tickets SET status = 'closed', closed_at = $4, updated_at = $4"
            " WHERE company_id = $1 AND mode = $2 AND id = $3 AND status = 'open'",
            tenant.company_id,
            tenant.mode,
            ticket_id,
            now,
        )
        return closed > 0

    async def list_tickets(
        self,
        tenant: Tenant,
        *,
        status: str | None = None,
        customer_id: str | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> Page:
        where = _Where(tenant)
        if status is not None:
            where.add(f"status = {where.param(status)}")
        if customer_id is not None:
            where.add(f"customer_id = {where.param(customer_id)}")
        return await self._paged(
            "tickets", _TICKET_COLUMNS, where, "opened_at DESC, id DESC", page, limit, _ticket
        )

    # -- messages ----------------------------------------------------------------------------

    async def insert_message(self, tenant: Tenant, message: Message) -> bool:
        """Store ``message``; False (nothing stored) when the company already has a message
        with its WhatsApp id: a callback Meta delivered again."""
        inserted = await self.db.execute(
            f"INSERT INTO messages (company_id, mode, {_MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4,"
            " $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
            " ON CONFLICT DO NOTHING",
            tenant.company_id,
            tenant.mode,
            message.id,
            message.direction,
            message.phone,
            message.customer_id,
            message.type,
            message.body,
            message.media_url,
            message.media_id,
            message.template_name,
            message.template_source,
            _dumps(message.params) if message.params else None,
            message.source,
            message.status,
            message.error_code,
            message.error_message,
            message.wa_id,
            message.job_id,
            message.created_at,
            message.updated_at,
        )
        return inserted > 0

    async def get_message(self, tenant: Tenant, message_id: str) -> Message | None:
        row = await self.db.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            message_id,
        )
        return None if row is None else _message(row)

    async def find_message_by_wa_id(self, tenant: Tenant, wa_id: str) -> Message | None:
        """The message with WhatsApp id ``wa_id``, locked for a change of status."""
        await self.db.serialise([f"wa:{tenant.company_id}:{wa_id}"])
        row = await self.db.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages"
            " WHERE company_id = $1 AND wa_id = $3 AND mode = $2" + self.db.for_update,
            tenant.company_id,
            tenant.mode,
            wa_id,
        )
        return None if row is None else _message(row)

    async def messages_of_jobs(self, job_ids: Sequence[str]) -> list[tuple[Tenant, Message]]:
        """The messages sent by these jobs, each with whose it is, locked for a change of
        status (in id order, as every batch locks them)."""
        if not job_ids:
            return []
        rows = await self.db.fetch(
            f"SELECT company_id, mode, {_MESSAGE_COLUMNS} FROM messages"
            f" WHERE {self.db.in_texts('job_id', '$1')} ORDER BY id" + self.db.for_update,
            self.db.text_array(job_ids),
        )
        return [(Tenant(row["company_id"], row["mode"]), _message(row)) for row in rows]

    async def messages_for_update(
        self, tenant: Tenant, message_ids: Sequence[str]
    ) -> list[Message]:
        """These messages of the tenant, locked for a change of status (in id order)."""
        if not message_ids:
            return []
        rows = await self.db.fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE company_id = $1 AND mode = $2"
            f" AND {self.db.in_texts('id', '$3')} ORDER BY id" + self.db.for_update,
            tenant.company_id,
            tenant.mode,
            self.db.text_array(message_ids),
        )
        return [_message(row) for row in rows]

    async def update_messages(self, changed: Sequence[tuple[Tenant, Message]]) -> None:
        """Write messages' progress: status, error, WhatsApp id, customer.

        By id alone (the messages were read for their tenant): a condition on the tenant's
        columns too lets PostgreSQL's generic plan, made on a young table's statistics, scan a
        company's messages by another index for every row (3 s a batch of 500 once measured)."""
        await self.db.executemany(
            "UPDATE messages SET status = $2, error_code = $3, error_message = $4, wa_id = $5,"
            " customer_id = $6, updated_at = $7 WHERE id = $1",
            [
                (
                    message.id,
                    message.status,
                    message.error_code,
                    message.error_message,
                    message.wa_id,
                    message.customer_id,
                    message.updated_at,
                )
                for _, message in changed
            ],
        )

    async def add_status_reports(
        self, reports: Sequence[tuple[str, StatusReport]], recorded_at: int
    ) -> set[tuple[str, str]]:
        """Keep each (message id, report) in its message's history; returns the (message id,
        status) pairs kept: a status reported before is not kept again. The caller holds the
        messages locked (``find_message_by_wa_id``, ``messages_of_jobs``,
        ``messages_for_update``), so what was reported before is what this reads."""
        if not reports:
            return set()
        ids = sorted({message_id for message_id, _ in reports})
        rows = await self.db.fetch(
            "SELECT message_id, status FROM message_statuses"
            f" WHERE {self.db.in_texts('message_id', '$1')}",
            self.db.text_array(ids),
        )
        kept = new_reports(reports, {(row["message_id"], row["status"]) for row in rows})
        await self.db.executemany(
            "INSERT INTO message_statuses (message_id, status, at, error_code, error_message,"
            " applied, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [
                (
                    message_id,
                    status,
                    report.at,
                    report.error_code,
                    report.error_message,
                    int(report.applied),
                    recorded_at,
                )
                for (message_id, status), report in kept.items()
            ],
        )
        return set(kept)

    async def keep_unmatched_status(
        self, company_id: str, wa_id: str, report: StatusReport, recorded_at: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO unmatched_statuses (company_id, wa_id, status, at, error_code,"
            " error_message, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT DO NOTHING",
            company_id,
            wa_id,
            report.status,
            report.at,
            report.error_code,
            report.error_message,
            recorded_at,
        )

    async def take_unmatched_statuses(
        self, company_id: str, wa_ids: Sequence[str]
    ) -> dict[str, list[StatusReport]]:
        """The statuses kept for these WhatsApp ids, each id's oldest first; removed. Takes
        turns with ``find_message_by_wa_id`` on each id: a status reported while the id is
        being given to its message is either seen here or finds the message there."""
        if not wa_ids:
            return {}
        await self.db.serialise([f"wa:{company_id}:{wa_id}" for wa_id in wa_ids])
        rows = await self.db.fetch(
            "DELETE FROM unmatched_statuses WHERE company_id = $1"
            f" AND {self.db.in_texts('wa_id', '$2')}"
            " RETURNING wa_id, status, at, error_code, error_message",
            company_id,
            self.db.text_array(wa_ids),
        )
        found: dict[str, list[StatusReport]] = {}
        for row in sorted(rows, key=lambda row: int(row["at"])):
            report = StatusReport(
                row["status"], row["at"], row["error_code"], row["error_message"], False
            )
            found.setdefault(row["wa_id"], []).append(report)
        return found

    async def status_reports(self, message_ids: Sequence[str]) -> dict[str, list[StatusReport]]:
        """Each message's reported statuses, oldest first."""
        if not message_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT message_id, status, at, error_code, error_message, applied"
            f" FROM message_statuses WHERE {self.db.in_texts('message_id', '$1')}"
            " ORDER BY at, recorded_at",
            self.db.text_array(message_ids),
        )
        found: dict[str, list[StatusReport]] = {}
        for row in rows:
            found.setdefault(row["message_id"], []).append(
                StatusReport(
                    row["status"],
                    row["at"],
                    row["error_code"],
                    row["error_message"],
                    bool(row["applied"]),
                )
            )
        return found

    async def last_inbound_at(self, tenant: Tenant, phone: str) -> int | None:
        """When the customer at ``phone`` last wrote (their service window opens then)."""
        row = await self.db.fetchrow(
            "SELECT MAX(created_at) AS at FROM messages WHERE company_id = $1 AND mode = $2"
            " AND phone = $3 AND direction = 'in'",
            tenant.company_id,
            tenant.mode,
            phone,
        )
        return None if row is None or row["at"] is None else int(row["at"])

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
    ) -> Page:
        """Messages newest first: a conversation (``phone``), or the send requests
        (``direction='out'``) with the filters of ``GET /messages/requests``."""
        where = _Where(tenant)
        for column, value in (
            ("phone", phone),
            ("direction", direction),
            ("id", message_id),
            ("template_name", template_name),
        ):
            if value is not None:
                where.add(f"{column} = {where.param(value)}")
        if since is not None:
            where.add(f"created_at >= {where.param(since)}")
        if until is not None:
            where.add(f"created_at <= {where.param(until)}")
        return await self._paged(
            "messages", _MESSAGE_COLUMNS, where, "created_at DESC, id DESC", page, limit, _message
        )

    async def list_conversations(
        self, tenant: Tenant, *, search: str | None = None, page: int = 1, limit: int = 20
    ) -> Page:
        """The tenant's conversations (one per phone number), latest activity first; each item
        is (the last message, when the customer last wrote or ``None``, the customer who has
        the number or ``None``). ``search`` matches the customer's name, email or number, or
        (digits alone, a national number's leading 0 aside) part of the number.

        One statement: the numbers and their latest times from the ``messages_conversation``
        index, the customer by the number, the page, then each number's last message by the
        same index; the total rides along as a window count (a second statement counts only
        when the page is past the end)."""
        where, args = self._conversation_search(tenant, search)
        size, offset = f"${len(args) + 1}", f"${len(args) + 2}"
        customer = ", ".join(f"c.{name} AS c_{name}" for name in _CUSTOMER_FIELDS)
        message = ", ".join(f"m.{name}" for name in _MESSAGE_COLUMNS.split(", "))
        rows = await self.db.fetch(
            f"WITH {_CONVERSATIONS}, found AS (SELECT convo.phone AS convo_phone, convo.last_at,"
            f" {customer}, COUNT(*) OVER () AS total FROM {_WITH_CUSTOMER}"
            f" WHERE {where} ORDER BY convo.last_at DESC, convo.phone DESC"
            f" LIMIT {size} OFFSET {offset})"
            f" SELECT found.*, {_LAST_INBOUND} AS last_in, {message}"
            f" FROM found JOIN messages m ON m.id = {_LAST_MESSAGE}"
            " ORDER BY found.last_at DESC, found.convo_phone DESC",
            *args,
            limit,
            (page - 1) * limit,
        )
        if rows:
            total = int(rows[0]["total"])
        elif page > 1:
            count = await self.db.fetchrow(
                f"WITH {_CONVERSATIONS} SELECT COUNT(*) AS n FROM {_WITH_CUSTOMER} WHERE {where}",
                *args,
            )
            total = 0 if count is None else int(count["n"])
        else:
            total = 0
        items = [
            (
                _message(row),
                None if row["last_in"] is None else int(row["last_in"]),
                None
                if row["c_id"] is None
                else _customer({name: row[f"c_{name}"] for name in _CUSTOMER_FIELDS}),
            )
            for row in rows
        ]
        return Page(items, total, page, limit)

    @staticmethod
    def _conversation_search(tenant: Tenant, search: str | None) -> tuple[str, list[Any]]:
        args: list[Any] = [tenant.company_id, tenant.mode]
        text = (search or "").strip()
        if not text:
            return "1 = 1", args
        args.append(like_pattern(text))
        conditions = [f"c.search_text LIKE ${len(args)} ESCAPE '\\'"]
        # a national number's trunk prefix (0812… for +62812…) is not in the E.164 form
        digits = "".join(char for char in text if char.isdigit()).lstrip("0")
        if digits and all(char.isdigit() or char in " +-().\u00a0" for char in text):
            args.append(f"%{digits}%")
            conditions.append(f"convo.phone LIKE ${len(args)}")
        return "(" + " OR ".join(conditions) + ")", args

    async def _paged(
        self,
        table: str,
        columns: str,
        where: _Where,
        order: str,
        page: int,
        limit: int,
        build: Callable[[Row], Any],
    ) -> Page:
        count = await self.db.fetchrow(
            f"SELECT COUNT(*) AS n FROM {table} WHERE {where.sql()}", *where.args
        )
        total = 0 if count is None else int(count["n"])
        size = where.param(limit)
        offset = where.param((page - 1) * limit)
        rows = await self.db.fetch(
            f"SELECT {columns} FROM {table} WHERE {where.sql()} ORDER BY {order}"
            f" LIMIT {size} OFFSET {offset}",
            *where.args,
        )
        return Page([build(row) for row in rows], total, page, limit)


def new_reports(
    reports: Sequence[tuple[str, StatusReport]], known: Set[tuple[str, str]] = frozenset()
) -> dict[tuple[str, str], StatusReport]:
    """The first report of each (message id, status) that is not ``known`` already."""
    kept: dict[tuple[str, str], StatusReport] = {}
    for message_id, report in reports:
        key = (message_id, report.status)
        if key not in known and key not in kept:
            kept[key] = report
    return kept
