"""What the customer typed on the payment page: the posted fields (a form, or pay.js's JSON),
the amount in the invoice's currency, and a sandbox card checked for completeness and
plausibility. Card numbers are returned for the one call, never kept."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from fastapi import Request
from starlette.datastructures import FormData

from paygate.kit.clock import utcnow
from paygate.kit.errors import FieldError, Problem, validation_failed
from paygate.kit.money import exponent
from paygate.web.forms import text

CARD_FIELDS = ("card_number", "card_expiry", "card_cvc", "card_name", "amount")
CARD_LABELS = {
    "card_number": "Card number",
    "card_expiry": "Expiry date",
    "card_cvc": "Security code",
    "card_name": "Name on card",
    "amount": "Amount",
}


def parse_amount(raw: str, currency: str) -> int | None:
    """ "12.50" in the invoice's currency -> 1250 minor units. Empty means the amount due."""
    raw = raw.strip().replace(",", "").replace(" ", "")
    if not raw:
        return None
    digits = exponent(currency)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise validation_failed([FieldError("amount", "Enter an amount more than zero.")])
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value():
        unit = "whole units" if digits == 0 else f"at most {digits} decimals"
        raise validation_failed([FieldError("amount", f"Enter the amount in {unit}.")])
    return int(minor)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


MAX_CARD_NAME = 200


def parse_card(form: Mapping[str, str]) -> str:
    """The card number when the form is complete and plausible; field errors otherwise."""
    errors = []
    number = re.sub(r"[\s-]", "", form.get("card_number", ""))
    if not number:
        errors.append(FieldError("card_number", "Enter the card number."))
    elif not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn(number):
        errors.append(FieldError("card_number", "This card number is not valid."))
    expiry = re.fullmatch(r"\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*", form.get("card_expiry", ""))
    if not expiry:
        errors.append(FieldError("card_expiry", "Enter the expiry date as MM/YY."))
    else:
        month, year = int(expiry.group(1)), int(expiry.group(2))
        year = year + 2000 if year < 100 else year
        today = utcnow().date()
        if not 1 <= month <= 12:
            errors.append(FieldError("card_expiry", "The month must be 01 to 12."))
        elif (year, month) < (today.year, today.month):
            errors.append(FieldError("card_expiry", "This card has expired."))
    if not re.fullmatch(r"\d{3,4}", form.get("card_cvc", "").strip()):
        errors.append(FieldError("card_cvc", "Enter the 3 or 4 digits on the back of the card."))
    card_name = form.get("card_name", "").strip()
    if not card_name:
        errors.append(FieldError("card_name", "Enter the name on the card."))
    elif len(card_name) > MAX_CARD_NAME:
        errors.append(FieldError("card_name", f"Use at most {MAX_CARD_NAME} characters."))
    if errors:
        raise validation_failed(errors)
    return number


async def read_body(request: Request) -> tuple[dict[str, str], bool]:
    """The posted fields, from a form or from pay.js's JSON; and whether JSON was sent."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            raw = await request.json()
        except ValueError:
            raw = None
        if not isinstance(raw, dict):
            raise Problem(400, "bad-request", "Bad request", "The request was not understood.")
        return {k: str(v) for k, v in raw.items() if isinstance(v, str | int)}, True
    form: FormData = await request.form()
    names = (
        "nonce",
        "gateway_id",
        "method_type",
        "payment_method",
        *CARD_FIELDS,
    )
    return {name: text(form, name) for name in names}, False
