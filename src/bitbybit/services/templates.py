"""Message templates: a company's bodies with ``{{1}}``, ``{{2}}``… placeholders (SPEC §7)."""

from __future__ import annotations

import re

from bitbybit.clock import iso
from bitbybit.errors import Conflict, IntegrityViolation, NotFound, ValidationFailed
from bitbybit.models import JSON, Page, Template, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import TemplateCreate, TemplateUpdate
from bitbybit.store import Tx

PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")


def param_count(body: str) -> int:
    """How many parameters ``body`` takes: its placeholders must be ``{{1}}`` to ``{{n}}``,
    each at least once, as WhatsApp requires."""
    numbers = {int(found) for found in PLACEHOLDER.findall(body)}
    if numbers and numbers != set(range(1, max(numbers) + 1)):
        missing = sorted(set(range(1, max(numbers) + 1)) - numbers)
        raise ValidationFailed.field(
            "body",
            "placeholders must be numbered {{1}}, {{2}}, … without gaps; missing "
            + ", ".join(f"{{{{{n}}}}}" for n in missing),
        )
    return len(numbers)


def render(body: str, params: list[str]) -> str:
    """The body with its placeholders filled in (what the customer reads)."""
    return PLACEHOLDER.sub(lambda found: params[int(found.group(1)) - 1], body)


def components(template: Template, params: list[str], media_url: str | None) -> list[JSON]:
    """The Cloud API's ``components`` of a template send: the header image, the body's
    parameters and, for an authentication template, the copy-code button (its code is the
    first parameter, as Meta's authentication templates require)."""
    found: list[JSON] = []
    if media_url:
        found.append(
            {"type": "header", "parameters": [{"type": "image", "image": {"link": media_url}}]}
        )
    if params:
        found.append(
            {"type": "body", "parameters": [{"type": "text", "text": value} for value in params]}
        )
    if template.source == "AUTH" and params:
        found.append(
            {
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": params[0]}],
            }
        )
    return found


def resource(template: Template) -> JSON:
    return {
        "name": template.name,
        "source": template.source,
        "language": template.language,
        "body": template.body,
        "headerMediaUrl": template.header_media_url,
        "paramCount": template.param_count,
        "createdAt": iso(template.created_at),
        "updatedAt": iso(template.updated_at),
    }


async def create(platform: Platform, tx: Tx, tenant: Tenant, data: TemplateCreate) -> Template:
    now = platform.now()
    template = Template(
        name=data.name,
        source=data.source,
        language=data.language,
        body=data.body,
        header_media_url=data.headerMediaUrl,
        param_count=param_count(data.body),
        created_at=now,
        updated_at=now,
    )
    if await tx.get_template(tenant, data.name) is not None:
        raise Conflict(f"a template named {data.name!r} already exists")
    try:
        await tx.insert_template(tenant, template)
    except IntegrityViolation:
        raise Conflict(f"a template named {data.name!r} already exists") from None
    return template


async def get(tx: Tx, tenant: Tenant, name: str) -> Template:
    template = await tx.get_template(tenant, name)
    if template is None:
        raise NotFound(f"no template named {name!r}")
    return template


async def update(
    platform: Platform, tx: Tx, tenant: Tenant, name: str, data: TemplateUpdate
) -> Template:
    template = await get(tx, tenant, name)
    sent = data.model_fields_set
    if "source" in sent and data.source is not None:
        template.source = data.source
    if "language" in sent and data.language is not None:
        template.language = data.language
    if "body" in sent and data.body is not None:
        template.body = data.body
        template.param_count = param_count(data.body)
    if "headerMediaUrl" in sent:
        template.header_media_url = data.headerMediaUrl
    template.updated_at = platform.now()
    await tx.update_template(tenant, template)
    return template


async def delete(tx: Tx, tenant: Tenant, name: str) -> str:
    if not await tx.delete_template(tenant, name):
        raise NotFound(f"no template named {name!r}")
    return name


async def listing(tx: Tx, tenant: Tenant, page: int, limit: int) -> Page:
    return await tx.list_templates(tenant, page, limit)
