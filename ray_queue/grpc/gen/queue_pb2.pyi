from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkloadState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKLOAD_STATE_UNSPECIFIED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_PENDING: _ClassVar[WorkloadState]
    WORKLOAD_STATE_QUOTA_RESERVED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_ADMITTED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_EVICTED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_FINISHED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_REJECTED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_FAILED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_CANCELLED: _ClassVar[WorkloadState]

class WorkloadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKLOAD_KIND_UNSPECIFIED: _ClassVar[WorkloadKind]
    WORKLOAD_KIND_PLACEMENT_GROUP: _ClassVar[WorkloadKind]
    WORKLOAD_KIND_TASK: _ClassVar[WorkloadKind]
    WORKLOAD_KIND_ACTOR: _ClassVar[WorkloadKind]
    WORKLOAD_KIND_JOB: _ClassVar[WorkloadKind]

class PlacementStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLACEMENT_STRATEGY_UNSPECIFIED: _ClassVar[PlacementStrategy]
    PLACEMENT_STRATEGY_PACK: _ClassVar[PlacementStrategy]
    PLACEMENT_STRATEGY_SPREAD: _ClassVar[PlacementStrategy]
    PLACEMENT_STRATEGY_STRICT_PACK: _ClassVar[PlacementStrategy]
    PLACEMENT_STRATEGY_STRICT_SPREAD: _ClassVar[PlacementStrategy]

class CheckState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECK_STATE_UNSPECIFIED: _ClassVar[CheckState]
    CHECK_STATE_PENDING: _ClassVar[CheckState]
    CHECK_STATE_READY: _ClassVar[CheckState]
    CHECK_STATE_RETRY: _ClassVar[CheckState]
    CHECK_STATE_REJECTED: _ClassVar[CheckState]
WORKLOAD_STATE_UNSPECIFIED: WorkloadState
WORKLOAD_STATE_PENDING: WorkloadState
WORKLOAD_STATE_QUOTA_RESERVED: WorkloadState
WORKLOAD_STATE_ADMITTED: WorkloadState
WORKLOAD_STATE_EVICTED: WorkloadState
WORKLOAD_STATE_FINISHED: WorkloadState
WORKLOAD_STATE_REJECTED: WorkloadState
WORKLOAD_STATE_FAILED: WorkloadState
WORKLOAD_STATE_CANCELLED: WorkloadState
WORKLOAD_KIND_UNSPECIFIED: WorkloadKind
WORKLOAD_KIND_PLACEMENT_GROUP: WorkloadKind
WORKLOAD_KIND_TASK: WorkloadKind
WORKLOAD_KIND_ACTOR: WorkloadKind
WORKLOAD_KIND_JOB: WorkloadKind
PLACEMENT_STRATEGY_UNSPECIFIED: PlacementStrategy
PLACEMENT_STRATEGY_PACK: PlacementStrategy
PLACEMENT_STRATEGY_SPREAD: PlacementStrategy
PLACEMENT_STRATEGY_STRICT_PACK: PlacementStrategy
PLACEMENT_STRATEGY_STRICT_SPREAD: PlacementStrategy
CHECK_STATE_UNSPECIFIED: CheckState
CHECK_STATE_PENDING: CheckState
CHECK_STATE_READY: CheckState
CHECK_STATE_RETRY: CheckState
CHECK_STATE_REJECTED: CheckState

class BundleGroup(_message.Message):
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

class LabelSelector(_message.Message):
    __slots__ = ("labels",)
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("entrypoint", "runtime_env_json", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENV_JSON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    entrypoint: str
    runtime_env_json: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, entrypoint: _Optional[str] = ..., runtime_env_json: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WorkloadSpec(_message.Message):
    __slots__ = ("id", "queue", "bundle_groups", "kind", "strategy", "priority_class", "owner", "min_count", "name", "created_at", "job", "bundle_label_selectors", "parent", "max_resources_milli")
    class MaxResourcesMilliEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    MIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_LABEL_SELECTORS_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    MAX_RESOURCES_MILLI_FIELD_NUMBER: _ClassVar[int]
    id: str
    queue: str
    bundle_groups: _containers.RepeatedCompositeFieldContainer[BundleGroup]
    kind: WorkloadKind
    strategy: PlacementStrategy
    priority_class: str
    owner: str
    min_count: int
    name: str
    created_at: float
    job: JobSpec
    bundle_label_selectors: _containers.RepeatedCompositeFieldContainer[LabelSelector]
    parent: str
    max_resources_milli: _containers.ScalarMap[str, int]
    def __init__(self, id: _Optional[str] = ..., queue: _Optional[str] = ..., bundle_groups: _Optional[_Iterable[_Union[BundleGroup, _Mapping]]] = ..., kind: _Optional[_Union[WorkloadKind, str]] = ..., strategy: _Optional[_Union[PlacementStrategy, str]] = ..., priority_class: _Optional[str] = ..., owner: _Optional[str] = ..., min_count: _Optional[int] = ..., name: _Optional[str] = ..., created_at: _Optional[float] = ..., job: _Optional[_Union[JobSpec, _Mapping]] = ..., bundle_label_selectors: _Optional[_Iterable[_Union[LabelSelector, _Mapping]]] = ..., parent: _Optional[str] = ..., max_resources_milli: _Optional[_Mapping[str, int]] = ...) -> None: ...

class FlavorResourceAmount(_message.Message):
    __slots__ = ("flavor", "resource", "milli")
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    MILLI_FIELD_NUMBER: _ClassVar[int]
    flavor: str
    resource: str
    milli: int
    def __init__(self, flavor: _Optional[str] = ..., resource: _Optional[str] = ..., milli: _Optional[int] = ...) -> None: ...

class GroupAdmission(_message.Message):
    __slots__ = ("flavors", "count")
    class FlavorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FLAVORS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    flavors: _containers.ScalarMap[str, str]
    count: int
    def __init__(self, flavors: _Optional[_Mapping[str, str]] = ..., count: _Optional[int] = ...) -> None: ...

class Admission(_message.Message):
    __slots__ = ("cluster_queue", "groups", "usage")
    CLUSTER_QUEUE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    cluster_queue: str
    groups: _containers.RepeatedCompositeFieldContainer[GroupAdmission]
    usage: _containers.RepeatedCompositeFieldContainer[FlavorResourceAmount]
    def __init__(self, cluster_queue: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[GroupAdmission, _Mapping]]] = ..., usage: _Optional[_Iterable[_Union[FlavorResourceAmount, _Mapping]]] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("at", "from_state", "to_state", "reason", "message", "admission")
    AT_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_FIELD_NUMBER: _ClassVar[int]
    at: float
    from_state: WorkloadState
    to_state: WorkloadState
    reason: str
    message: str
    admission: Admission
    def __init__(self, at: _Optional[float] = ..., from_state: _Optional[_Union[WorkloadState, str]] = ..., to_state: _Optional[_Union[WorkloadState, str]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., admission: _Optional[_Union[Admission, _Mapping]] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("spec", "state", "priority", "cluster_queue", "admission", "checks", "reason", "message", "requeue_count", "requeue_at", "placed", "history", "set_aside")
    class ChecksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CheckState
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CheckState, str]] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_QUEUE_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEUE_COUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEUE_AT_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    SET_ASIDE_FIELD_NUMBER: _ClassVar[int]
    spec: WorkloadSpec
    state: WorkloadState
    priority: int
    cluster_queue: str
    admission: Admission
    checks: _containers.ScalarMap[str, CheckState]
    reason: str
    message: str
    requeue_count: int
    requeue_at: float
    placed: bool
    history: _containers.RepeatedCompositeFieldContainer[Transition]
    set_aside: bool
    def __init__(self, spec: _Optional[_Union[WorkloadSpec, _Mapping]] = ..., state: _Optional[_Union[WorkloadState, str]] = ..., priority: _Optional[int] = ..., cluster_queue: _Optional[str] = ..., admission: _Optional[_Union[Admission, _Mapping]] = ..., checks: _Optional[_Mapping[str, CheckState]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., requeue_count: _Optional[int] = ..., requeue_at: _Optional[float] = ..., placed: _Optional[bool] = ..., history: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ..., set_aside: _Optional[bool] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("type", "message", "code")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    code: int
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., code: _Optional[int] = ...) -> None: ...

class SubmitWorkloadsRequest(_message.Message):
    __slots__ = ("workloads",)
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[WorkloadSpec]
    def __init__(self, workloads: _Optional[_Iterable[_Union[WorkloadSpec, _Mapping]]] = ...) -> None: ...

class SubmitResult(_message.Message):
    __slots__ = ("id", "workload", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    workload: Workload
    error: ErrorDetail
    def __init__(self, id: _Optional[str] = ..., workload: _Optional[_Union[Workload, _Mapping]] = ..., error: _Optional[_Union[ErrorDetail, _Mapping]] = ...) -> None: ...

class SubmitWorkloadsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SubmitResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SubmitResult, _Mapping]]] = ...) -> None: ...

class GetWorkloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelWorkloadRequest(_message.Message):
    __slots__ = ("id", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    message: str
    def __init__(self, id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CancelWorkloadResponse(_message.Message):
    __slots__ = ("was_live", "workload")
    WAS_LIVE_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    was_live: bool
    workload: Workload
    def __init__(self, was_live: _Optional[bool] = ..., workload: _Optional[_Union[Workload, _Mapping]] = ...) -> None: ...

class ListWorkloadsRequest(_message.Message):
    __slots__ = ("queue", "cluster_queue", "states", "owner", "page_size", "page_token", "include_history")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    queue: str
    cluster_queue: str
    states: _containers.RepeatedScalarFieldContainer[WorkloadState]
    owner: str
    page_size: int
    page_token: str
    include_history: bool
    def __init__(self, queue: _Optional[str] = ..., cluster_queue: _Optional[str] = ..., states: _Optional[_Iterable[_Union[WorkloadState, str]]] = ..., owner: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_history: _Optional[bool] = ...) -> None: ...

class ListWorkloadsResponse(_message.Message):
    __slots__ = ("workloads", "next_page_token", "total_size")
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[Workload]
    next_page_token: str
    total_size: int
    def __init__(self, workloads: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class WatchWorkloadsRequest(_message.Message):
    __slots__ = ("queue", "cluster_queue", "owner", "ids", "send_initial")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_QUEUE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    SEND_INITIAL_FIELD_NUMBER: _ClassVar[int]
    queue: str
    cluster_queue: str
    owner: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    send_initial: bool
    def __init__(self, queue: _Optional[str] = ..., cluster_queue: _Optional[str] = ..., owner: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., send_initial: _Optional[bool] = ...) -> None: ...

class WorkloadEvent(_message.Message):
    __slots__ = ("seq", "workload", "queue", "cluster_queue", "owner", "transition")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_QUEUE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    workload: str
    queue: str
    cluster_queue: str
    owner: str
    transition: Transition
    def __init__(self, seq: _Optional[int] = ..., workload: _Optional[str] = ..., queue: _Optional[str] = ..., cluster_queue: _Optional[str] = ..., owner: _Optional[str] = ..., transition: _Optional[_Union[Transition, _Mapping]] = ...) -> None: ...

class ListPendingRequest(_message.Message):
    __slots__ = ("queue", "cluster_queue", "limit")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_QUEUE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    cluster_queue: str
    limit: int
    def __init__(self, queue: _Optional[str] = ..., cluster_queue: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class PendingWorkload(_message.Message):
    __slots__ = ("workload", "queue", "cluster_queue", "priority", "position_in_queue", "position_in_cluster_queue", "reason", "name", "parent")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_QUEUE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    POSITION_IN_QUEUE_FIELD_NUMBER: _ClassVar[int]
    POSITION_IN_CLUSTER_QUEUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    workload: str
    queue: str
    cluster_queue: str
    priority: int
    position_in_queue: int
    position_in_cluster_queue: int
    reason: str
    name: str
    parent: str
    def __init__(self, workload: _Optional[str] = ..., queue: _Optional[str] = ..., cluster_queue: _Optional[str] = ..., priority: _Optional[int] = ..., position_in_queue: _Optional[int] = ..., position_in_cluster_queue: _Optional[int] = ..., reason: _Optional[str] = ..., name: _Optional[str] = ..., parent: _Optional[str] = ...) -> None: ...

class ListPendingResponse(_message.Message):
    __slots__ = ("pending",)
    PENDING_FIELD_NUMBER: _ClassVar[int]
    pending: _containers.RepeatedCompositeFieldContainer[PendingWorkload]
    def __init__(self, pending: _Optional[_Iterable[_Union[PendingWorkload, _Mapping]]] = ...) -> None: ...

class ResourceUsage(_message.Message):
    __slots__ = ("flavor", "resource", "nominal_milli", "borrowing_limit_milli", "lending_limit_milli", "usage_milli", "borrowed_milli")
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    NOMINAL_MILLI_FIELD_NUMBER: _ClassVar[int]
    BORROWING_LIMIT_MILLI_FIELD_NUMBER: _ClassVar[int]
    LENDING_LIMIT_MILLI_FIELD_NUMBER: _ClassVar[int]
    USAGE_MILLI_FIELD_NUMBER: _ClassVar[int]
    BORROWED_MILLI_FIELD_NUMBER: _ClassVar[int]
    flavor: str
    resource: str
    nominal_milli: int
    borrowing_limit_milli: int
    lending_limit_milli: int
    usage_milli: int
    borrowed_milli: int
    def __init__(self, flavor: _Optional[str] = ..., resource: _Optional[str] = ..., nominal_milli: _Optional[int] = ..., borrowing_limit_milli: _Optional[int] = ..., lending_limit_milli: _Optional[int] = ..., usage_milli: _Optional[int] = ..., borrowed_milli: _Optional[int] = ...) -> None: ...

class ClusterQueueStatus(_message.Message):
    __slots__ = ("name", "cohort", "pending", "reserving", "admitted", "resources", "weighted_share")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COHORT_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESERVING_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_SHARE_FIELD_NUMBER: _ClassVar[int]
    name: str
    cohort: str
    pending: int
    reserving: int
    admitted: int
    resources: _containers.RepeatedCompositeFieldContainer[ResourceUsage]
    weighted_share: float
    def __init__(self, name: _Optional[str] = ..., cohort: _Optional[str] = ..., pending: _Optional[int] = ..., reserving: _Optional[int] = ..., admitted: _Optional[int] = ..., resources: _Optional[_Iterable[_Union[ResourceUsage, _Mapping]]] = ..., weighted_share: _Optional[float] = ...) -> None: ...

class CohortStatus(_message.Message):
    __slots__ = ("name", "parent", "resources", "weighted_share")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_SHARE_FIELD_NUMBER: _ClassVar[int]
    name: str
    parent: str
    resources: _containers.RepeatedCompositeFieldContainer[ResourceUsage]
    weighted_share: float
    def __init__(self, name: _Optional[str] = ..., parent: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[ResourceUsage, _Mapping]]] = ..., weighted_share: _Optional[float] = ...) -> None: ...

class GetClusterQueuesRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class GetClusterQueuesResponse(_message.Message):
    __slots__ = ("cluster_queues",)
    CLUSTER_QUEUES_FIELD_NUMBER: _ClassVar[int]
    cluster_queues: _containers.RepeatedCompositeFieldContainer[ClusterQueueStatus]
    def __init__(self, cluster_queues: _Optional[_Iterable[_Union[ClusterQueueStatus, _Mapping]]] = ...) -> None: ...

class GetCohortsRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class GetCohortsResponse(_message.Message):
    __slots__ = ("cohorts",)
    COHORTS_FIELD_NUMBER: _ClassVar[int]
    cohorts: _containers.RepeatedCompositeFieldContainer[CohortStatus]
    def __init__(self, cohorts: _Optional[_Iterable[_Union[CohortStatus, _Mapping]]] = ...) -> None: ...

class UnmanagedUsage(_message.Message):
    __slots__ = ("flavor", "resource", "amount", "by_job")
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BY_JOB_FIELD_NUMBER: _ClassVar[int]
    flavor: str
    resource: str
    amount: int
    by_job: _containers.RepeatedCompositeFieldContainer[RayJobAmount]
    def __init__(self, flavor: _Optional[str] = ..., resource: _Optional[str] = ..., amount: _Optional[int] = ..., by_job: _Optional[_Iterable[_Union[RayJobAmount, _Mapping]]] = ...) -> None: ...

class RayJobAmount(_message.Message):
    __slots__ = ("ray_job_id", "amount")
    RAY_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ray_job_id: str
    amount: int
    def __init__(self, ray_job_id: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class GetUnmanagedUsageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetUnmanagedUsageResponse(_message.Message):
    __slots__ = ("usage",)
    USAGE_FIELD_NUMBER: _ClassVar[int]
    usage: _containers.RepeatedCompositeFieldContainer[UnmanagedUsage]
    def __init__(self, usage: _Optional[_Iterable[_Union[UnmanagedUsage, _Mapping]]] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("text", "format")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    text: str
    format: str
    def __init__(self, text: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class ConfigProblem(_message.Message):
    __slots__ = ("document", "field", "message")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    document: str
    field: str
    message: str
    def __init__(self, document: _Optional[str] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ApplyConfigRequest(_message.Message):
    __slots__ = ("yaml", "documents", "validate_only")
    YAML_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    documents: ConfigDocuments
    validate_only: bool
    def __init__(self, yaml: _Optional[str] = ..., documents: _Optional[_Union[ConfigDocuments, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class ConfigDocuments(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    def __init__(self, items: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...

class ApplyConfigResponse(_message.Message):
    __slots__ = ("applied", "problems", "summary", "evicted")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EVICTED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    problems: _containers.RepeatedCompositeFieldContainer[ConfigProblem]
    summary: str
    evicted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, applied: _Optional[bool] = ..., problems: _Optional[_Iterable[_Union[ConfigProblem, _Mapping]]] = ..., summary: _Optional[str] = ..., evicted: _Optional[_Iterable[str]] = ...) -> None: ...
