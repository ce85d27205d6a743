"""Webhooks: inbound (gateway events verified, stored, processed) and outbound (company
endpoints, signed deliveries)."""
