"""Webhooks: `inbound` (verified events from the gateways) and `outbound` (signed events
to the companies' own systems)."""
