"""Webhooks: the outbox and its dispatcher, inbound Vyte hooks, asynchronous operations."""
