"""The upstream: Vyte's API v2 client, its wire models and its error types."""
