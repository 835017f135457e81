"""Generated gRPC and protobuf stubs of the taskyard.v1 wire contract (``make protos``)."""
