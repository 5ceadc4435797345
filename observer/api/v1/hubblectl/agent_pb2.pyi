import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from observer.api.v1.observer import observer_pb2 as _observer_pb2
from observer.api.v1.flow import flow_pb2 as _flow_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateEndpointRequest(_message.Message):
    __slots__ = ("namespace", "name", "labels")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteEndpointRequest(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DeleteEndpointResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetEndpointRequest(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UpdateEndpointLabelsRequest(_message.Message):
    __slots__ = ("namespace", "name", "labels")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ListEndpointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEndpointsResponse(_message.Message):
    __slots__ = ("endpoints",)
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    def __init__(self, endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("id", "namespace", "name", "ipv4", "ipv6", "identity", "labels", "netns", "interface_name", "ifindex", "mac", "state", "policy_enforcement_ingress", "policy_enforcement_egress", "created")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_ENFORCEMENT_INGRESS_FIELD_NUMBER: _ClassVar[int]
    POLICY_ENFORCEMENT_EGRESS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    id: int
    namespace: str
    name: str
    ipv4: str
    ipv6: str
    identity: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    netns: str
    interface_name: str
    ifindex: int
    mac: str
    state: str
    policy_enforcement_ingress: str
    policy_enforcement_egress: str
    created: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., ipv4: _Optional[str] = ..., ipv6: _Optional[str] = ..., identity: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., netns: _Optional[str] = ..., interface_name: _Optional[str] = ..., ifindex: _Optional[int] = ..., mac: _Optional[str] = ..., state: _Optional[str] = ..., policy_enforcement_ingress: _Optional[str] = ..., policy_enforcement_egress: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PolicyFile(_message.Message):
    __slots__ = ("filename", "text")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    filename: str
    text: str
    def __init__(self, filename: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ApplyPoliciesRequest(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[PolicyFile]
    def __init__(self, files: _Optional[_Iterable[_Union[PolicyFile, _Mapping]]] = ...) -> None: ...

class PolicySummary(_message.Message):
    __slots__ = ("kind", "namespace", "name", "revision", "endpoints", "ingress", "egress", "filename")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    INGRESS_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    revision: int
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    ingress: bool
    egress: bool
    filename: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., revision: _Optional[int] = ..., endpoints: _Optional[_Iterable[str]] = ..., ingress: _Optional[bool] = ..., egress: _Optional[bool] = ..., filename: _Optional[str] = ...) -> None: ...

class PolicyChange(_message.Message):
    __slots__ = ("policy", "action")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    policy: PolicySummary
    action: str
    def __init__(self, policy: _Optional[_Union[PolicySummary, _Mapping]] = ..., action: _Optional[str] = ...) -> None: ...

class ApplyResult(_message.Message):
    __slots__ = ("revision", "endpoints_changed", "entries_written")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    revision: int
    endpoints_changed: int
    entries_written: int
    def __init__(self, revision: _Optional[int] = ..., endpoints_changed: _Optional[int] = ..., entries_written: _Optional[int] = ...) -> None: ...

class ApplyPoliciesResponse(_message.Message):
    __slots__ = ("changes", "result")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[PolicyChange]
    result: ApplyResult
    def __init__(self, changes: _Optional[_Iterable[_Union[PolicyChange, _Mapping]]] = ..., result: _Optional[_Union[ApplyResult, _Mapping]] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies", "revision")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[PolicySummary]
    revision: int
    def __init__(self, policies: _Optional[_Iterable[_Union[PolicySummary, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("namespace", "name", "kind")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    kind: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class PolicyDocument(_message.Message):
    __slots__ = ("summary", "yaml")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    summary: PolicySummary
    yaml: str
    def __init__(self, summary: _Optional[_Union[PolicySummary, _Mapping]] = ..., yaml: _Optional[str] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("namespace", "name", "kind")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    kind: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class DeletePolicyResponse(_message.Message):
    __slots__ = ("deleted", "result")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    deleted: PolicySummary
    result: ApplyResult
    def __init__(self, deleted: _Optional[_Union[PolicySummary, _Mapping]] = ..., result: _Optional[_Union[ApplyResult, _Mapping]] = ...) -> None: ...

class TracePolicyRequest(_message.Message):
    __slots__ = ("source", "destination", "dport", "protocol")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    DPORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    dport: int
    protocol: str
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ..., dport: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class TraceDirection(_message.Message):
    __slots__ = ("direction", "endpoint_id", "remote_identity", "enforced", "allowed", "action", "match_type", "reason", "rule")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    REMOTE_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ENFORCED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MATCH_TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    direction: str
    endpoint_id: int
    remote_identity: int
    enforced: bool
    allowed: bool
    action: str
    match_type: int
    reason: str
    rule: str
    def __init__(self, direction: _Optional[str] = ..., endpoint_id: _Optional[int] = ..., remote_identity: _Optional[int] = ..., enforced: _Optional[bool] = ..., allowed: _Optional[bool] = ..., action: _Optional[str] = ..., match_type: _Optional[int] = ..., reason: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class TracePolicyResponse(_message.Message):
    __slots__ = ("verdict", "allowed", "audited", "match_type", "match_type_text", "decided_by", "policy_kind", "policy_namespace", "policy_name", "source", "destination", "source_identity", "destination_identity", "egress", "ingress", "explanation")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    AUDITED_FIELD_NUMBER: _ClassVar[int]
    MATCH_TYPE_FIELD_NUMBER: _ClassVar[int]
    MATCH_TYPE_TEXT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    POLICY_KIND_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    INGRESS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    verdict: str
    allowed: bool
    audited: bool
    match_type: int
    match_type_text: str
    decided_by: str
    policy_kind: str
    policy_namespace: str
    policy_name: str
    source: str
    destination: str
    source_identity: int
    destination_identity: int
    egress: TraceDirection
    ingress: TraceDirection
    explanation: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, verdict: _Optional[str] = ..., allowed: _Optional[bool] = ..., audited: _Optional[bool] = ..., match_type: _Optional[int] = ..., match_type_text: _Optional[str] = ..., decided_by: _Optional[str] = ..., policy_kind: _Optional[str] = ..., policy_namespace: _Optional[str] = ..., policy_name: _Optional[str] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., source_identity: _Optional[int] = ..., destination_identity: _Optional[int] = ..., egress: _Optional[_Union[TraceDirection, _Mapping]] = ..., ingress: _Optional[_Union[TraceDirection, _Mapping]] = ..., explanation: _Optional[_Iterable[str]] = ...) -> None: ...

class FlowBatch(_message.Message):
    __slots__ = ("json_lines", "count", "times_ns", "json_lines_lz4", "json_lines_lz4_sizes")
    JSON_LINES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TIMES_NS_FIELD_NUMBER: _ClassVar[int]
    JSON_LINES_LZ4_FIELD_NUMBER: _ClassVar[int]
    JSON_LINES_LZ4_SIZES_FIELD_NUMBER: _ClassVar[int]
    json_lines: bytes
    count: int
    times_ns: _containers.RepeatedScalarFieldContainer[int]
    json_lines_lz4: _containers.RepeatedScalarFieldContainer[bytes]
    json_lines_lz4_sizes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, json_lines: _Optional[bytes] = ..., count: _Optional[int] = ..., times_ns: _Optional[_Iterable[int]] = ..., json_lines_lz4: _Optional[_Iterable[bytes]] = ..., json_lines_lz4_sizes: _Optional[_Iterable[int]] = ...) -> None: ...
