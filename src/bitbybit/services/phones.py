"""Phone numbers in E.164, parsed by ``phonenumbers``; local numbers use the company's country."""

from __future__ import annotations

import phonenumbers

from bitbybit.errors import ValidationFailed


def normalise(raw: str, country: str, field: str = "phoneNumber") -> str:
    """``0812-3456-7890`` in ``ID`` → ``+6281234567890``; invalid numbers are refused."""
    try:
        number = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException as error:
        raise ValidationFailed.field(field, f"{raw!r} is not a phone number ({error})") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed.field(field, f"{raw!r} is not a valid phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
