"""Generated protobuf and gRPC modules (see alcor.rpc.codegen)."""
