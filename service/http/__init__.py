"""The HTTP edge, the only part that reads or writes the API's wire format: request schemas,
resources, problems, middlewares, handlers and routes."""
