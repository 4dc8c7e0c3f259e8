"""Generated protobuf and gRPC stubs for ``proto/``; do not edit (run ``make proto``)."""
