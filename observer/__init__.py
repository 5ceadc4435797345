"""hubblectl node agent: eBPF datapath, flow parsing, history and the Hubble API."""

__version__ = "0.1.0"
