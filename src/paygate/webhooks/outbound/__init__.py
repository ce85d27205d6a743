"""Outbound webhooks: a company's endpoints and the signed deliveries of its events.

Every event is one message (one body, one `webhook-id`) and one delivery per subscribed
endpoint, written in the transaction of the change that caused it, with a job deferred in
that same transaction. Deliveries follow the Standard Webhooks specification.
"""
