"""The Taskyard scheduler: the gRPC server keeping the durable queue of work requests."""
