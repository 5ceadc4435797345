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

class FlowBatch(_message.Message):
    __slots__ = ("json_lines", "count")
    JSON_LINES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    json_lines: bytes
    count: int
    def __init__(self, json_lines: _Optional[bytes] = ..., count: _Optional[int] = ...) -> None: ...
