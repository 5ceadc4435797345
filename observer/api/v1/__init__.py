"""Generated from proto/observer/api/v1 by scripts/gen_proto.py. Do not edit."""
