"""Pure domain code: free-time arithmetic, participants, the booking state machine, webhook
signatures. Standard library and attrs only."""
