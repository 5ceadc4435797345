"""Generated from proto/observer/api/v1/flow by scripts/gen_proto.py. Do not edit."""
