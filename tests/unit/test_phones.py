"""``services.phones.normalise``: its fast path for plain E.164 decides exactly as the parser."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitbybit.errors import ValidationFailed
from bitbybit.services.phones import normalise


def parser_says(raw: str, country: str) -> str | None:
    """What ``phonenumbers`` alone makes of ``raw``: the E.164 form, or None when refused."""
    try:
        number = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def ours(raw: str, country: str) -> str | None:
    try:
        return normalise(raw, country)
    except ValidationFailed:
        return None


CODES = st.sampled_from(["1", "7", "33", "39", "44", "49", "52", "55", "62", "86", "91", "261"])


@given(st.text(alphabet="0123456789", min_size=1, max_size=17), st.sampled_from(["ID", "US"]))
def test_plus_and_any_digits_decide_as_the_parser(digits: str, country: str) -> None:
    assert ours("+" + digits, country) == parser_says("+" + digits, country)


@given(CODES, st.text(alphabet="0123456789", min_size=4, max_size=13))
def test_numbers_of_real_country_codes_decide_as_the_parser(code: str, rest: str) -> None:
    assert ours(f"+{code}{rest}", "ID") == parser_says(f"+{code}{rest}", "ID")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+6281234567890", "+6281234567890"),
        ("0812-3456-7890", "+6281234567890"),
        ("+1 650 253 0000", "+16502530000"),
        ("+390612345678", "+390612345678"),  # an Italian leading zero: the parser's case
        ("+119032832613", "+19032832613"),  # a national prefix written after the code
    ],
)
def test_examples(raw: str, expected: str) -> None:
    assert normalise(raw, "ID") == expected


def test_refusals_name_the_field_and_the_number() -> None:
    with pytest.raises(ValidationFailed) as refused:
        normalise("+62812", "ID", "to")
    assert refused.value.details[0].field == "to"
    assert "'+62812'" in refused.value.message
    with pytest.raises(ValidationFailed) as garbage:
        normalise("call me {maybe}", "ID", "to")
    assert "is not a phone number" in garbage.value.message
    assert "{maybe}" in garbage.value.message
