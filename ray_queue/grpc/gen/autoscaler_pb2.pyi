from ray_queue.grpc.gen import queue_pb2 as _queue_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Bundle(_message.Message):
    __slots__ = ("resources_milli",)
    class ResourcesMilliEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RESOURCES_MILLI_FIELD_NUMBER: _ClassVar[int]
    resources_milli: _containers.ScalarMap[str, int]
    def __init__(self, resources_milli: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Gang(_message.Message):
    __slots__ = ("workload", "bundles", "strategy", "all_at_once", "state", "attempt")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ALL_AT_ONCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    workload: str
    bundles: _containers.RepeatedCompositeFieldContainer[Bundle]
    strategy: _queue_pb2.PlacementStrategy
    all_at_once: bool
    state: _queue_pb2.WorkloadState
    attempt: int
    def __init__(self, workload: _Optional[str] = ..., bundles: _Optional[_Iterable[_Union[Bundle, _Mapping]]] = ..., strategy: _Optional[_Union[_queue_pb2.PlacementStrategy, str]] = ..., all_at_once: _Optional[bool] = ..., state: _Optional[_Union[_queue_pb2.WorkloadState, str]] = ..., attempt: _Optional[int] = ...) -> None: ...

class BundleShape(_message.Message):
    __slots__ = ("resources_milli", "count")
    class ResourcesMilliEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RESOURCES_MILLI_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    resources_milli: _containers.ScalarMap[str, int]
    count: int
    def __init__(self, resources_milli: _Optional[_Mapping[str, int]] = ..., count: _Optional[int] = ...) -> None: ...

class FlavorDemand(_message.Message):
    __slots__ = ("flavor", "all_at_once", "gangs", "shapes")
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    ALL_AT_ONCE_FIELD_NUMBER: _ClassVar[int]
    GANGS_FIELD_NUMBER: _ClassVar[int]
    SHAPES_FIELD_NUMBER: _ClassVar[int]
    flavor: str
    all_at_once: bool
    gangs: _containers.RepeatedCompositeFieldContainer[Gang]
    shapes: _containers.RepeatedCompositeFieldContainer[BundleShape]
    def __init__(self, flavor: _Optional[str] = ..., all_at_once: _Optional[bool] = ..., gangs: _Optional[_Iterable[_Union[Gang, _Mapping]]] = ..., shapes: _Optional[_Iterable[_Union[BundleShape, _Mapping]]] = ...) -> None: ...

class WatchDemandRequest(_message.Message):
    __slots__ = ("flavors",)
    FLAVORS_FIELD_NUMBER: _ClassVar[int]
    flavors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, flavors: _Optional[_Iterable[str]] = ...) -> None: ...

class DemandSnapshot(_message.Message):
    __slots__ = ("generation", "at", "flavors")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    FLAVORS_FIELD_NUMBER: _ClassVar[int]
    generation: int
    at: float
    flavors: _containers.RepeatedCompositeFieldContainer[FlavorDemand]
    def __init__(self, generation: _Optional[int] = ..., at: _Optional[float] = ..., flavors: _Optional[_Iterable[_Union[FlavorDemand, _Mapping]]] = ...) -> None: ...

class ReportAdmissionCheckRequest(_message.Message):
    __slots__ = ("workload", "check", "state", "message")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    workload: str
    check: str
    state: _queue_pb2.CheckState
    message: str
    def __init__(self, workload: _Optional[str] = ..., check: _Optional[str] = ..., state: _Optional[_Union[_queue_pb2.CheckState, str]] = ..., message: _Optional[str] = ...) -> None: ...

class ReportAdmissionCheckResponse(_message.Message):
    __slots__ = ("workload",)
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    workload: _queue_pb2.Workload
    def __init__(self, workload: _Optional[_Union[_queue_pb2.Workload, _Mapping]] = ...) -> None: ...

class EvictWorkloadRequest(_message.Message):
    __slots__ = ("workload", "reason", "message")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    workload: str
    reason: str
    message: str
    def __init__(self, workload: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class EvictWorkloadResponse(_message.Message):
    __slots__ = ("workload",)
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    workload: _queue_pb2.Workload
    def __init__(self, workload: _Optional[_Union[_queue_pb2.Workload, _Mapping]] = ...) -> None: ...

class WorkerGroupShape(_message.Message):
    __slots__ = ("name", "resources")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    resources: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., resources: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ReportWorkerGroupsRequest(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[WorkerGroupShape]
    def __init__(self, groups: _Optional[_Iterable[_Union[WorkerGroupShape, _Mapping]]] = ...) -> None: ...

class ReportWorkerGroupsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
