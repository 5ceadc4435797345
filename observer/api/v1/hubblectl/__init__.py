"""Generated from proto/observer/api/v1/hubblectl by scripts/gen_proto.py. Do not edit."""
