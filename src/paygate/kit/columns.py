"""Column types shared by every model."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from sqlalchemy import DateTime, String, func
from sqlalchemy.orm import mapped_column

PublicId = Annotated[str, mapped_column(String(40), primary_key=True)]
CompanyRef = Annotated[str, mapped_column(String(40), index=True)]
CreatedAt = Annotated[
    datetime, mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
]
Timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True))]
