"""The Hubble-compatible API: generated protobuf/gRPC modules (``observer.api.v1``, from
proto/observer/api/v1 by scripts/gen_proto.py) and fast dict <-> message conversion
(``observer.api.convert``)."""
