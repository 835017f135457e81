"""gRPC servicers: convert, call one use case, convert back. No business logic."""
