"""The upstream: Vyte's API v2 client, its wire models, its error types, and their mapping to
the gateway's bookings and errors."""
