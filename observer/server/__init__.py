"""gRPC servicers: Hubble's Observer, Peer and health services, and our hubblectl.v1 API."""
