"""gRPC helpers both sides need: status mapping, credentials, message limits."""
