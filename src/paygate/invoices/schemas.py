"""API shapes of invoices."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)

Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOID = "void"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


CountryCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_upper=True, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$"
    ),
]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40)]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]


class Customer(Strict):
    name: Text200
    email: Annotated[EmailStr, StringConstraints(max_length=320)]
    country: CountryCode | None = Field(
        default=None, description="ISO 3166-1 alpha-2 (routing rules may match on it)"
    )


class LineItemIn(Strict):
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
    ]
    quantity: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    unit_amount: Annotated[StrictInt, Field(ge=0, le=10**12, description="Minor units")]


class InvoiceCreate(Strict):
    number: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None
    ) = None
    customer: Customer
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    line_items: list[LineItemIn] = Field(min_length=1, max_length=100)
    due_date: date | None = None
    memo: Annotated[str, StringConstraints(max_length=2000)] | None = None
    allow_partial_payments: StrictBool = False
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=20,
        description="Your own string keys and values, up to 20 (routing rules may match on them)",
    )
    draft: StrictBool = Field(
        default=False, description="Keep it a draft: not payable until finalized"
    )


class LineItemOut(BaseModel):
    description: str
    quantity: int
    unit_amount: int
    amount: int


class InvoiceOut(BaseModel):
    id: str
    number: str
    status: InvoiceStatus
    customer: Customer
    currency: str
    line_items: list[LineItemOut]
    amount_total: int
    amount_paid: int
    amount_refunded: int
    amount_due: int
    due_date: date | None
    memo: str | None
    allow_partial_payments: bool
    metadata: dict[str, str]
    pay_url: str
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None
    voided_at: datetime | None


class InvoicePage(BaseModel):
    data: list[InvoiceOut]
    has_more: bool
    next_cursor: str | None
