"""Agent configuration (flags of `hubblectl agent`)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from observer.datapath.ipam import DEFAULT_IPV4_RANGE, DEFAULT_IPV6_RANGE
from observer.errors import ConfigError

DEFAULT_SOCKET = "/var/run/hubblectl/hubble.sock"
DEFAULT_STATE_DIR = "/var/lib/hubblectl"
DEFAULT_BPF_ROOT = "/sys/fs/bpf/hubblectl"
DEFAULT_MAX_FLOWS = 65535
AGGREGATION_LEVELS = {"none": 0, "medium": 1}


def repo_bpf_dir() -> Path:
    """bpf/build of the source tree this package was installed from (editable installs)."""
    return Path(__file__).resolve().parent.parent.parent / "bpf" / "build"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    node_name: str = ""
    cluster_name: str = "default"
    state_dir: str = DEFAULT_STATE_DIR
    socket_path: str = DEFAULT_SOCKET
    listen_address: str = ""
    bpf_root: str = DEFAULT_BPF_ROOT
    bpf_dir: str = ""
    ipv4_range: str = DEFAULT_IPV4_RANGE
    ipv6_range: str = DEFAULT_IPV6_RANGE
    netns_prefix: str = "hubblectl-"
    max_flows: int = DEFAULT_MAX_FLOWS
    aggregation: str = "medium"
    report_interval_s: float = 5.0
    ring_bytes: int = 4 * 1024 * 1024
    poll_interval_ms: int = 10
    print_flows: bool = False
    metrics_address: str = ""
    cluster_dir: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_files: tuple[str, ...] = ()
    # the HTTP/2 front door (observer/server/front.py) owns the plaintext sockets and serves
    # Hubble's standard GetFlows stream itself; False: grpc.aio serves them directly
    fast_stream: bool = True

    @property
    def short_node_name(self) -> str:
        return self.node_name or socket.gethostname().split(".")[0]

    @property
    def absolute_node_name(self) -> str:
        """Hubble's `<cluster>/<node>` form used in flow.node_name."""
        return f"{self.cluster_name}/{self.short_node_name}"

    @property
    def bpf_object_dir(self) -> Path:
        return Path(self.bpf_dir) if self.bpf_dir else repo_bpf_dir()

    def validate(self) -> None:
        if self.aggregation not in AGGREGATION_LEVELS:
            raise ConfigError(
                f"--monitor-aggregation: {self.aggregation!r} is not one of {', '.join(AGGREGATION_LEVELS)}"
            )
        m = self.max_flows
        if m < 1 or (m + 1) & m:
            raise ConfigError(f"--max-flows: {m} must be one less than a power of two (e.g. 4095, 65535)")
        if self.ring_bytes < 4096 or self.ring_bytes & (self.ring_bytes - 1):
            raise ConfigError(f"--ring-bytes: {self.ring_bytes} must be a power of two >= 4096")
        if not 1 <= self.poll_interval_ms <= 1000:
            raise ConfigError("--poll-interval-ms must be between 1 and 1000")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("--tls-cert-file and --tls-key-file go together")
        if self.tls_cert_file and not self.listen_address:
            raise ConfigError("--tls-cert-file needs --listen-address (TLS is for the TCP listener)")
        if self.tls_client_ca_files and not self.tls_cert_file:
            raise ConfigError("--tls-client-ca-files needs --tls-cert-file")
        if self.report_interval_s <= 0:
            raise ConfigError("--monitor-interval must be positive")
