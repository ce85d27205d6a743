"""paygate: a multi-tenant payment gateway service."""
