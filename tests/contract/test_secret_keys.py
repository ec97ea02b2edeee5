"""The secret key against what the database holds, on SQLite and PostgreSQL (issue 9, defect 4).

The start-up check refuses a key that cannot decrypt the stored signing secrets, and key
rotation moves every stored secret onto the first key, batch by batch, without losing one that
the API changed meanwhile.
"""

from __future__ import annotations

import pytest

from bitbybit.errors import ConfigurationError
from bitbybit.models import Endpoint, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate
from bitbybit.services import numbers, webhooks
from bitbybit.services.secret_keys import rotate_secret_key
from bitbybit.store import Store
from tests.conftest import Account

OLD_KEY = "the-old-secret-key-of-this-test"
NEW_KEY = "the-new-secret-key-of-this-test"
LOST_KEY = "a-key-nobody-has-any-more"


def keyed(platform: Platform, secret_key: str) -> Platform:
    """The same store, seen by a process configured with ``secret_key``."""
    return Platform(
        platform.store,
        platform.settings.replace(
            secret_key=secret_key,
            allow_private_targets=True,
            allow_http_targets=True,
        ),
    )


async def make_endpoint(platform: Platform, account: Account, n: int = 0) -> tuple[str, str]:
    tenant = Tenant(account.company.id, "live")
    data = EndpointCreate(url=f"http://127.0.0.1:9/hook/{n}")
    endpoint, secret = await webhooks.create_endpoint(platform, tenant, data)
    return endpoint.id, secret


async def make_endpoints(
    platform: Platform, accounts: tuple[Account, Account], counts: tuple[int, int]
) -> list[tuple[str, str]]:
    """``counts`` endpoints of each of two companies, encrypted under ``OLD_KEY``."""
    old = keyed(platform, OLD_KEY)
    return [
        await make_endpoint(old, account, n)
        for account, count in zip(accounts, counts, strict=True)
        for n in range(count)
    ]


async def stored(store: Store, account: Account, endpoint_id: str) -> Endpoint:
    async with store.read() as tx:
        endpoint = await tx.get_endpoint(Tenant(account.company.id, "live"), endpoint_id)
    assert endpoint is not None
    return endpoint


async def test_an_empty_database_passes(platform: Platform) -> None:
    await keyed(platform, NEW_KEY).check_secret_key()


async def test_a_wrong_key_is_refused_naming_the_variable(
    platform: Platform, account: Account
) -> None:
    await make_endpoint(keyed(platform, OLD_KEY), account)

    with pytest.raises(ConfigurationError) as refused:
        await keyed(platform, NEW_KEY).check_secret_key()

    assert "BITBYBIT_SECRET_KEY" in str(refused.value)
    assert "cannot decrypt 1 of the 1 stored secrets" in str(refused.value)
    await keyed(platform, OLD_KEY).check_secret_key()
    await keyed(platform, f"{NEW_KEY},{OLD_KEY}").check_secret_key()


async def test_a_rotated_to_secret_is_checked_too(platform: Platform, account: Account) -> None:
    """A process that lacks the key the others now encrypt with is refused, although it still
    decrypts every current secret."""
    endpoint_id, _ = await make_endpoint(keyed(platform, OLD_KEY), account)
    tenant = Tenant(account.company.id, "live")
    await webhooks.rotate_secret(keyed(platform, f"{NEW_KEY},{OLD_KEY}"), tenant, endpoint_id, 24)

    with pytest.raises(ConfigurationError, match="cannot decrypt 1 of the 2"):
        await keyed(platform, OLD_KEY).check_secret_key()
    await keyed(platform, NEW_KEY + "," + OLD_KEY).check_secret_key()


async def test_the_sample_is_the_endpoints_changed_last_and_created_first(
    store: Store, platform: Platform, account: Account, other_account: Account
) -> None:
    made = await make_endpoints(platform, (account, other_account), (5, 5))
    ids = [endpoint_id for endpoint_id, _ in made]
    # The third endpoint is changed last.
    changed = await stored(store, account, ids[2])
    changed.updated_at += 1000
    async with store.write() as tx:
        await tx.update_endpoint(Tenant(account.company.id, "live"), changed)

    async with store.read() as tx:
        sample = await tx.sample_sealed_secrets(2)

    sampled = [sealed.endpoint_id for sealed in sample]
    # The clock stands still: every endpoint has the same times but ids[2], and the id decides.
    changed_last = [ids[2], min(set(ids) - {ids[2]})]
    created_first = sorted(ids)[:2]
    assert sorted(sampled) == sorted(set(changed_last) | set(created_first))
    assert {sealed.tenant.company_id for sealed in sample} <= {
        account.company.id,
        other_account.company.id,
    }


async def test_rotation_moves_every_secret_onto_the_first_key(
    store: Store, platform: Platform, account: Account, other_account: Account
) -> None:
    made = await make_endpoints(platform, (account, other_account), (4, 3))
    old = keyed(platform, OLD_KEY)
    tenant = Tenant(account.company.id, "live")
    rotating, next_secret = await webhooks.rotate_secret(old, tenant, made[0][0], 24)

    both = keyed(platform, f"{NEW_KEY},{OLD_KEY}")
    done = await rotate_secret_key(both, batch=3)

    assert (done.resealed, done.current, done.unreadable, done.reset) == (8, 0, [], {})
    new = keyed(platform, NEW_KEY)
    await new.check_secret_key()
    for (endpoint_id, secret), owner in zip(made, [account] * 4 + [other_account] * 3, strict=True):
        endpoint = await stored(store, owner, endpoint_id)
        assert new.secrets.open(endpoint.secret) == secret
    first = await stored(store, account, rotating.id)
    assert first.next_secret is not None
    assert new.secrets.open(first.next_secret) == next_secret
    assert first.updated_at == rotating.updated_at  # re-encrypting is no change to the endpoint
    with pytest.raises(ConfigurationError):
        await old.check_secret_key()

    again = await rotate_secret_key(both, batch=3)
    assert (again.resealed, again.current) == (0, 8)


async def test_a_secret_changed_meanwhile_is_not_overwritten(
    store: Store, platform: Platform, account: Account
) -> None:
    endpoint_id, _ = await make_endpoint(keyed(platform, OLD_KEY), account)
    before = await stored(store, account, endpoint_id)
    box = keyed(platform, NEW_KEY).secrets

    async with store.write() as tx:
        replaced = await tx.reseal_secret(endpoint_id, box.seal("read earlier"), box.seal("x"))

    assert replaced is False
    assert (await stored(store, account, endpoint_id)).secret == before.secret


async def test_secrets_of_a_lost_key_are_reported_or_reset(
    store: Store, platform: Platform, account: Account
) -> None:
    lost_id, _ = await make_endpoint(keyed(platform, LOST_KEY), account, 1)
    kept_id, kept_secret = await make_endpoint(keyed(platform, OLD_KEY), account, 2)
    current = keyed(platform, OLD_KEY)

    reported = await rotate_secret_key(current)
    assert (reported.unreadable, reported.reset, reported.current) == ([lost_id], {}, 1)
    with pytest.raises(ConfigurationError, match="secrets rotate --reset-unreadable"):
        await current.check_secret_key()

    reset = await rotate_secret_key(current, reset_unreadable=True)

    assert reset.unreadable == []
    assert list(reset.reset) == [lost_id]
    await current.check_secret_key()
    endpoint = await stored(store, account, lost_id)
    assert current.secrets.open(endpoint.secret) == reset.reset[lost_id]
    assert reset.reset[lost_id].startswith("whsec_")
    kept = await stored(store, account, kept_id)
    assert current.secrets.open(kept.secret) == kept_secret


# -- WhatsApp numbers' access tokens and app secrets ----------------------------------------------


async def connect_number(platform: Platform, account: Account, phone_number_id: str) -> None:
    connection = numbers.Connection(
        company_id=account.company.id,
        phone_number_id=phone_number_id,
        access_token=f"token-{phone_number_id}",
        app_secret=f"app-secret-{phone_number_id}",
        verify_token="verify",
    )
    await platform.run(lambda tx: numbers.connect(platform, tx, connection))


async def test_whatsapp_secrets_are_checked_at_start_and_rotated(
    platform: Platform, account: Account
) -> None:
    old = keyed(platform, OLD_KEY)
    await connect_number(old, account, "1001")
    with pytest.raises(ConfigurationError):
        await keyed(platform, NEW_KEY).check_secret_key()

    both = keyed(platform, f"{NEW_KEY},{OLD_KEY}")
    await both.check_secret_key()
    done = await rotate_secret_key(both)
    assert done.resealed == 2
    assert done.unreadable_numbers == []

    new = keyed(platform, NEW_KEY)
    await new.check_secret_key()  # the old key can go now
    async with platform.store.read() as tx:
        (number,) = await tx.list_whatsapp_numbers(account.company.id)
    assert new.secrets.open(number.access_token) == "token-1001"
    assert new.secrets.open(number.app_secret) == "app-secret-1001"
    assert (await rotate_secret_key(new)).resealed == 0  # a second run finds nothing to do


async def test_whatsapp_secrets_of_a_lost_key_are_reported(
    platform: Platform, account: Account
) -> None:
    await connect_number(keyed(platform, LOST_KEY), account, "1002")
    done = await rotate_secret_key(keyed(platform, NEW_KEY))
    assert done.unreadable_numbers == ["1002"]
