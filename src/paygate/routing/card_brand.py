"""The card brand of a payment method, where paygate can know it without seeing a card.

paygate never holds real card numbers: it knows a brand only from a sandbox test card
number (public test numbers) or a gateway token that names it (Stripe's `pm_card_visa`
test tokens, `tok_visa`). Anything else is unknown, and a rule asking for a brand does not
match a payment whose brand is unknown.
"""

from __future__ import annotations

import re

from paygate.routing.schemas import CardBrand

_TOKEN = re.compile(r"^(?:pm_card|tok)_([a-z]+)", re.IGNORECASE)
_TOKEN_NAMES = {
    "visa": CardBrand.VISA,
    "mastercard": CardBrand.MASTERCARD,
    "amex": CardBrand.AMEX,
    "discover": CardBrand.DISCOVER,
    "jcb": CardBrand.JCB,
    "diners": CardBrand.DINERS,
    "unionpay": CardBrand.UNIONPAY,
}


def _by_number(digits: str) -> CardBrand | None:
    """The brand from the card number's leading digits (the IIN ranges)."""
    two, four = int(digits[:2]), int(digits[:4])
    six = int(digits[:6])
    if digits[0] == "4":
        return CardBrand.VISA
    if 51 <= two <= 55 or 222100 <= six <= 272099:
        return CardBrand.MASTERCARD
    if two in (34, 37):
        return CardBrand.AMEX
    if four == 6011 or two == 65 or 644 <= int(digits[:3]) <= 649:
        return CardBrand.DISCOVER
    if 3528 <= four <= 3589:
        return CardBrand.JCB
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return CardBrand.DINERS
    if two == 62:
        return CardBrand.UNIONPAY
    return None


def card_brand_of(payment_method: str | None) -> str | None:
    """The brand ("visa", ...) of a test card number or a brand-naming token; else None."""
    if not payment_method:
        return None
    token = _TOKEN.match(payment_method)
    if token:
        brand = _TOKEN_NAMES.get(token.group(1).lower())
        return brand.value if brand else None
    digits = payment_method.replace(" ", "").replace("-", "")
    if digits.isdigit() and 12 <= len(digits) <= 19:
        found = _by_number(digits)
        return found.value if found else None
    return None
