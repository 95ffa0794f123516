"""runce: run code once, durably, on the database a service already has."""
