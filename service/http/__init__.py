"""The HTTP edge: middlewares, request parsing, handlers and routes."""
