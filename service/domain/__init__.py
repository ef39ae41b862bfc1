"""Pure domain code: free-time arithmetic, the booking state machine, webhook signatures."""
