"""One servicer per contract service: a few lines each, protobuf in, one use-case call, protobuf out."""
