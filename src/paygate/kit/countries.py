"""Country codes (ISO 3166-1 alpha-2), from Babel's territory data like the currencies."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale

# Babel's territories also name groupings and private-use codes that are no country.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"})


@lru_cache
def known_countries() -> frozenset[str]:
    codes = (str(code) for code in Locale("en").territories)
    return frozenset(
        code for code in codes if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
    )


def is_country(code: str) -> bool:
    return code in known_countries()
