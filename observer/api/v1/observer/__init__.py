"""Generated from proto/observer/api/v1/observer by scripts/gen_proto.py. Do not edit."""
