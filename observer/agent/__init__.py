"""The node agent: wires datapath, BPF, parser, store and servers together."""
