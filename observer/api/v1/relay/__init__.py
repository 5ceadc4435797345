"""Generated from proto/observer/api/v1/relay by scripts/gen_proto.py. Do not edit."""
