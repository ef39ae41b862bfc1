"""Webhooks: the outbox and its dispatcher, subscriptions, inbound Vyte hooks, asynchronous
operations."""
