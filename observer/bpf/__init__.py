"""BPF: libbpf bindings (the only ctypes module), loader, ring buffer, event ABI mirrors."""
