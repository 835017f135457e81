"""The scheduler's use cases: submit, register, connect, assign, complete, abort, retry."""
