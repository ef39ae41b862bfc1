"""booking-gateway: an async booking service in front of the Vyte scheduling API."""
