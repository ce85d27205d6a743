"""The invoice pages' form fields to the API's shapes, and their errors back: amounts typed
as 12.50 become integers in the currency's minor unit, the new-invoice form becomes an
`InvoiceCreate`, and Pydantic's wording is said the way the rest of the page speaks. No
rule lives here: invoices/schemas.py and invoices/service.py decide what is valid."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.datastructures import FormData

from paygate.invoices.schemas import InvoiceCreate
from paygate.kit.errors import FieldError, Problem, validation_failed
from paygate.kit.money import exponent, is_currency
from paygate.web.forms import parse, text, texts

MAX_LINES = 100

LINE_LABELS = {"description": "Description", "quantity": "Quantity", "unit_amount": "Unit price"}
INVOICE_LABELS = {
    "customer.name": "Customer name",
    "customer.email": "Customer email",
    "currency": "Currency",
    "due_date": "Due date",
    "memo": "Memo",
    "number": "Invoice number",
    "line_items": "Line items",
    "allow_partial_payments": "Partial payments",
}


# --- amounts typed by people -------------------------------------------------------------

AMOUNT = re.compile(r"\d{1,15}(\.\d*)?|\.\d+")


def to_minor_units(raw: str, currency: str | None) -> int | str:
    """12.50 USD -> 1250, 1200 JPY -> 1200; a message (str) when it cannot be read.

    `currency` None (not a known code) checks only that it is a number.
    """
    cleaned = raw.strip().replace(",", "").replace(" ", "")
    if not cleaned:
        return "is required"
    if not AMOUNT.fullmatch(cleaned):
        return "must be an amount like 12.50"
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return "must be an amount like 12.50"
    if currency is None:
        return int(value.scaleb(2).to_integral_value())
    digits = exponent(currency)
    scaled = value.scaleb(digits)
    if scaled != scaled.to_integral_value():
        if digits == 0:
            return f"must be a whole number: {currency} has no decimals"
        return f"may have at most {digits} decimals in {currency}"
    return int(scaled)


def minor_to_input(amount: int, currency: str) -> str:
    """The other way, for a form shown again: 1250 USD -> 12.50."""
    digits = exponent(currency) if is_currency(currency) else 2
    return f"{Decimal(amount).scaleb(-digits):.{digits}f}"


# --- the new-invoice form -------------------------------------------------------------


@dataclass
class LineValues:
    description: str = ""
    quantity: str = "1"
    unit_price: str = ""

    @property
    def blank(self) -> bool:
        return not (self.description.strip() or self.unit_price.strip()) and (
            self.quantity.strip() in ("", "1")
        )


@dataclass
class InvoiceFormValues:
    customer_name: str = ""
    customer_email: str = ""
    currency: str = "USD"
    due_date: str = ""
    memo: str = ""
    number: str = ""
    allow_partial_payments: bool = False
    lines: list[LineValues] = field(default_factory=lambda: [LineValues()])

    @classmethod
    def from_form(cls, form: FormData) -> InvoiceFormValues:
        descriptions = texts(form, "line_description")
        quantities = texts(form, "line_quantity")
        prices = texts(form, "line_unit_price")
        count = min(max(len(descriptions), len(quantities), len(prices)), MAX_LINES + 1)

        def at(values: list[str], index: int, default: str = "") -> str:
            return values[index] if index < len(values) else default

        lines = [
            LineValues(at(descriptions, i), at(quantities, i, "1"), at(prices, i))
            for i in range(count)
        ]
        return cls(
            customer_name=text(form, "customer.name"),
            customer_email=text(form, "customer.email"),
            currency=text(form, "currency").strip().upper(),
            due_date=text(form, "due_date").strip(),
            memo=text(form, "memo"),
            number=text(form, "number"),
            allow_partial_payments=text(form, "allow_partial_payments") == "on",
            lines=lines,
        )


def _quantity(raw: str) -> int | str:
    raw = raw.strip().replace(",", "")
    return int(raw) if re.fullmatch(r"\d{1,9}", raw) else raw


FRIENDLY = {
    "missing": "is required",
    "string_too_short": "is required",
    "string_too_long": "is too long",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
    "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_type": "must be a date (YYYY-MM-DD)",
}


def _friendly(error: FieldError) -> FieldError:
    """Pydantic's wording, said the way the rest of the page speaks."""
    message = FRIENDLY.get(error.code)
    if error.field == "customer.email" and error.code in ("value_error", "string_too_long"):
        message = "is not a valid email address"
    elif error.field.endswith(".quantity") and error.code.startswith(("greater", "less")):
        message = "must be between 1 and 1,000,000"
    elif error.field.endswith(".unit_amount") and error.code.startswith(("greater", "less")):
        message = "is out of range"
    elif error.field == "line_items" and error.code == "too_short":
        message = "Add at least one line."
    elif error.field == "line_items" and error.code == "too_long":
        message = f"An invoice has at most {MAX_LINES} lines."
    return FieldError(error.field, message or error.message, error.code)


def invoice_request(values: InvoiceFormValues) -> InvoiceCreate:
    """The API's InvoiceCreate from the form; a Problem with every field error at once."""
    currency = values.currency or ""
    known = currency if is_currency(currency) else None
    lines = [line for line in values.lines if not line.blank]
    own: list[FieldError] = []
    if currency and known is None:
        # The service says the same; said here too so every error shows at once.
        own.append(FieldError("currency", "is not an ISO 4217 currency code", "unsupported"))
    items: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        amount = to_minor_units(line.unit_price, known)
        if isinstance(amount, str):
            own.append(FieldError(f"line_items.{index}.unit_amount", amount, "bad_amount"))
            amount = 0
        items.append(
            {
                "description": line.description,
                "quantity": _quantity(line.quantity),
                "unit_amount": amount,
            }
        )
    if values.due_date:
        try:
            date.fromisoformat(values.due_date)
        except ValueError:
            own.append(FieldError("due_date", "must be a date (YYYY-MM-DD)", "date_parsing"))
    data: dict[str, Any] = {
        "customer": {"name": values.customer_name, "email": values.customer_email.strip()},
        "currency": currency,
        "line_items": items,
        "due_date": values.due_date or None,
        "memo": values.memo.strip() or None,
        "number": values.number.strip() or None,
        "allow_partial_payments": values.allow_partial_payments,
        "draft": True,
    }
    if own:
        data["due_date"] = None if any(e.field == "due_date" for e in own) else data["due_date"]
    try:
        request = parse(InvoiceCreate, data)
    except Problem as problem:
        mine = {e.field for e in own}
        errors = own + [_friendly(e) for e in problem.errors if e.field not in mine]
        raise validation_failed(errors) from None
    if own:
        raise validation_failed(own)
    return request


def invoice_known_fields(values: InvoiceFormValues) -> list[str]:
    names = list(INVOICE_LABELS)
    for index in range(len(values.lines)):
        names.extend(f"line_items.{index}.{name}" for name in LINE_LABELS)
    return names


def invoice_labels(values: InvoiceFormValues) -> dict[str, str]:
    labels = dict(INVOICE_LABELS)
    for index in range(len(values.lines)):
        for name, label in LINE_LABELS.items():
            labels[f"line_items.{index}.{name}"] = label
    return labels
