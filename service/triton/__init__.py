"""The Triton adapter: the gateway (one long-lived aio client), the embedded server, the CPU backend."""
