import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetQualityRequest(_message.Message):
    __slots__ = ("evaluator", "slices", "window", "score")
    class SlicesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    evaluator: str
    slices: _containers.ScalarMap[str, str]
    window: _duration_pb2.Duration
    score: str
    def __init__(self, evaluator: _Optional[str] = ..., slices: _Optional[_Mapping[str, str]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., score: _Optional[str] = ...) -> None: ...

class GetQualityResponse(_message.Message):
    __slots__ = ("evaluator", "score", "slices", "start_time_unix_nano", "end_time_unix_nano", "n", "mean", "ci_low", "ci_high", "confidence", "pass_rate", "n_effective", "scale_low", "scale_high", "statuses", "regression")
    class SlicesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class StatusesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    N_EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    SCALE_LOW_FIELD_NUMBER: _ClassVar[int]
    SCALE_HIGH_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    REGRESSION_FIELD_NUMBER: _ClassVar[int]
    evaluator: str
    score: str
    slices: _containers.ScalarMap[str, str]
    start_time_unix_nano: int
    end_time_unix_nano: int
    n: int
    mean: float
    ci_low: float
    ci_high: float
    confidence: float
    pass_rate: float
    n_effective: float
    scale_low: float
    scale_high: float
    statuses: _containers.ScalarMap[str, int]
    regression: _struct_pb2.Struct
    def __init__(self, evaluator: _Optional[str] = ..., score: _Optional[str] = ..., slices: _Optional[_Mapping[str, str]] = ..., start_time_unix_nano: _Optional[int] = ..., end_time_unix_nano: _Optional[int] = ..., n: _Optional[int] = ..., mean: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., confidence: _Optional[float] = ..., pass_rate: _Optional[float] = ..., n_effective: _Optional[float] = ..., scale_low: _Optional[float] = ..., scale_high: _Optional[float] = ..., statuses: _Optional[_Mapping[str, int]] = ..., regression: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListSlicesRequest(_message.Message):
    __slots__ = ("window",)
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    window: _duration_pb2.Duration
    def __init__(self, window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SliceValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class ListSlicesResponse(_message.Message):
    __slots__ = ("slices",)
    class SlicesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SliceValues
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SliceValues, _Mapping]] = ...) -> None: ...
    SLICES_FIELD_NUMBER: _ClassVar[int]
    slices: _containers.MessageMap[str, SliceValues]
    def __init__(self, slices: _Optional[_Mapping[str, SliceValues]] = ...) -> None: ...
