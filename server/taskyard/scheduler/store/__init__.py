"""Storage of the scheduler's durable state: a port and its adapters."""
