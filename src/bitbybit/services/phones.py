"""Phone numbers in E.164, parsed by ``phonenumbers``; local numbers use the company's country.

Checking a number costs ``phonenumbers`` some 200 µs, a quarter of a WhatsApp send's work in
the API. So a number already in E.164 (``+`` and digits, as API clients and Meta send them)
skips the general parser when it is valid as it stands: its country code is looked up directly
and only the validity check runs (anything else goes to the parser, which also mends numbers
written with a national prefix); and the answers for the numbers seen last are remembered (a
conversation sends to the same numbers again and again).
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from bitbybit.errors import ValidationFailed

REMEMBERED = 65_536
"""Numbers whose answer is kept (each some 200 bytes)."""


def normalise(raw: str, country: str, field: str = "phoneNumber") -> str:
    """``0812-3456-7890`` in ``ID`` → ``+6281234567890``; invalid numbers are refused."""
    found = _normalised(raw, country)
    if found.startswith("+"):
        return found
    raise ValidationFailed.field(field, found.format(raw=repr(raw)))


@lru_cache(maxsize=REMEMBERED)
def _normalised(raw: str, country: str) -> str:
    """The E.164 form, or (not starting with ``+``) why ``raw`` is refused."""
    plain = _e164(raw)
    if plain is not None and phonenumbers.is_valid_number(plain):
        return raw
    try:  # not plainly E.164, or not valid as it stands: the parser may still read it
        number = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException as error:
        reason = str(error).replace("{", "{{").replace("}", "}}")
        return f"{{raw}} is not a phone number ({reason})"
    if not phonenumbers.is_valid_number(number):
        return "{raw} is not a valid phone number"
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _e164(raw: str) -> phonenumbers.PhoneNumber | None:
    """``raw`` as a number when it is plainly E.164 (``+``, a country code, a national number
    without a leading zero, at most 15 digits); ``None`` sends it to the general parser."""
    digits = raw[1:]
    if not raw.startswith("+") or not digits.isascii() or not digits.isdigit():
        return None
    if not 8 <= len(digits) <= 15 or digits.startswith("0"):
        return None  # (the parser explains what is wrong with it)
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            if not national or national.startswith("0"):
                return None  # (Italian leading zeros and the like: the parser knows them)
            return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return None
