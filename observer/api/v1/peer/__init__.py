"""Generated from proto/observer/api/v1/peer by scripts/gen_proto.py. Do not edit."""
