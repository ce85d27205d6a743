"""The one money type: an integer amount in the currency's minor unit plus its ISO 4217 code."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_currency, get_currency_precision, list_currencies


@lru_cache
def known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def is_currency(code: str) -> bool:
    return code in known_currencies()


@lru_cache
def exponent(currency: str) -> int:
    """Digits after the decimal point (JPY 0, USD 2, KWD 3), from Babel's ISO 4217 data."""
    return int(get_currency_precision(currency))


@dataclass(frozen=True, order=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError("Money.amount must be an int in minor units")
        if not is_currency(self.currency):
            raise ValueError(f"unknown currency {self.currency!r}")

    def decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-exponent(self.currency))

    def format(self, locale: str = "en_US") -> str:
        return str(format_currency(self.decimal(), self.currency, locale=locale))

    def __str__(self) -> str:
        return self.format()
