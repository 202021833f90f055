"""The gRPC layer: servicers translate protobuf to the use cases and back; errors map to status codes here."""
