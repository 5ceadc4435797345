"""The datapath's control side: endpoints (netns, veth, routes), IPAM, labels, identities and
the state directory. BPF attachment is the agent's job, not this package's."""
