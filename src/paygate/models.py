"""Imports every model module, so Base.metadata knows every table (Alembic, tests)."""

from __future__ import annotations

import paygate.accounts.models
import paygate.gateways.models
import paygate.invoices.models
import paygate.monitoring.models
import paygate.payments.gateway_reports  # the payments' dispute columns
import paygate.payments.models
import paygate.payments.retry_queue
import paygate.routing.models
import paygate.security.history
import paygate.security.models
import paygate.webhooks.inbound.models
import paygate.webhooks.outbound.models  # noqa: F401
from paygate.db import Base

metadata = Base.metadata
