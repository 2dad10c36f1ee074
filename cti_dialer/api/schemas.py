"""Request and response shapes of the HTTP API, declared once.

The same classes validate requests (pydantic, through flask-openapi3) and
produce the OpenAPI document, so the document cannot drift from what the
server accepts. They check shape only: whether a task, line or number is
acceptable is decided by the daemon's own parsers in ``cti_dialer.model``,
called through ``cti_dialer.admin``.
"""
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictFloat, StrictInt, StrictStr


class Strict(BaseModel):
    # An unknown field is a typo the operator should hear about, not a default silently kept.
    model_config = ConfigDict(extra="forbid")


VariableValue = Union[StrictStr, StrictInt, StrictFloat, StrictBool]
Variables = Dict[str, VariableValue]
Name = Field(min_length=1, max_length=128)


# --- errors ----------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the fault is: a body path such as params.limit or numbers[3], "
                                   "a query parameter, or a header.")
    reason: str


class Error(BaseModel):
    """Every error response: 400, 401, 403, 404, 405, 409, 413, 503."""
    error: str = Field(description="A stable code: invalid, bad_json, unauthorized, forbidden, not_found, "
                                   "conflict, too_large, unavailable...")
    message: str
    details: List[ErrorDetail] = []


# --- common ------------------------------------------------------------------------------


class HostQuery(Strict):
    host: Optional[str] = Field(None, min_length=1, max_length=128,
                                description="Work on this host's own entries (@HOST) instead of the template.")


class NamePath(BaseModel):
    name: str = Field(min_length=1, max_length=128)


class Notified(BaseModel):
    channel: str
    receivers: int = Field(description="Daemons that received the config_change.")


class Written(BaseModel):
    name: str
    scope: str = Field(description="template, a host name, or the domain for lines, groups and configs.")
    created: bool = False
    notified: List[Notified] = []


class EntryShow(BaseModel):
    name: str
    config: Any = Field(description="The entry's JSON as stored (text when it is not JSON).")


class Deleted(BaseModel):
    name: str
    deleted: bool
    notified: List[Notified] = []


class Items(BaseModel):
    items: List[Dict[str, Any]]


# --- configuration entries -------------------------------------------------------------------


class TaskDoc(Strict):
    params: Dict[str, Any] = Field(description="Task params as in docs/redis.rst (line_group, limit, "
                                               "number_queue, destination_extension, work_hour...). Checked "
                                               "with the daemon's own parser merged with the other scope.")
    variables: Optional[Variables] = None


class TaskCreate(TaskDoc):
    name: str = Name


class EntryPatch(Strict):
    """A JSON merge patch (RFC 7386): objects merge, null removes a key."""
    params: Optional[Dict[str, Any]] = None
    variables: Optional[Dict[str, Optional[VariableValue]]] = None


class GroupFields(Strict):
    """A line group's fields (docs/redis.rst, Line group JSON); the admin layer checks the values."""
    lines: Optional[List[StrictStr]] = Field(None, description="One tier of line names.")
    line: Optional[List[Any]] = Field(None, description="mod_cti's priority tiers: a list of lists of names.")
    enable: Optional[StrictBool] = None
    rest: Optional[Any] = Field(None, description="mod_cti: milliseconds between two calls through the group.")
    redialer_count: Optional[Any] = Field(None, description="mod_cti: group redials allowed per number.")
    redialer_rule: Optional[Any] = Field(None, description="mod_cti: rule object(s) of calls to redial.")
    no_redialer_rule: Optional[Any] = Field(None, description="mod_cti: rule object(s) of calls never redialed.")
    params: Optional[Dict[str, Any]] = None


class GroupPatch(GroupFields):
    pass


class LineDoc(Strict):
    params: Dict[str, Any] = Field(description="gateway, limit (or count), prefix, enable, or mod_cti's "
                                               "dialstring; see docs/redis.rst.")
    variables: Optional[Variables] = None


class LineCreate(LineDoc):
    name: str = Name


class GroupDoc(GroupFields):
    pass


class GroupCreate(GroupDoc):
    name: str = Name


class ScheduleConfigDoc(Strict):
    params: Dict[str, Any] = Field(description="line_group, destination_extension, destination_dialplan, "
                                               "destination_context...")
    variables: Optional[Variables] = None


class ScheduleConfigCreate(ScheduleConfigDoc):
    name: str = Name


class TaskDetail(BaseModel):
    name: str
    template: Any = Field(None, description="The raw @template entry (null when none).")
    host: Any = Field(None, description="The raw @HOST entry (null when none).")
    host_name: str
    effective: Optional[Dict[str, Any]] = Field(None, description="The task as that host runs it (merged).")
    error: Optional[str] = Field(None, description="Why the host cannot run it, when it cannot.")
    stopped_at: Optional[float] = None


# --- status ------------------------------------------------------------------------------------


TaskState = Literal["running", "paused", "stopped", "waiting", "completed", "error", "unknown"]


class TaskStatus(BaseModel):
    name: str
    state: TaskState
    enable: bool
    calls_up: int
    limit: int
    queued: int
    pending_redials: int
    dialed: int
    answered: int
    failed: int
    failed_by_cause: Dict[str, int]
    total: int = Field(description="processed + queued + pending_redials + calls_up")
    processed: int = Field(description="Attempts with a final outcome (results that scheduled no redial).")
    answer_rate: float = Field(description="answered / processed, 0..1")
    completed: bool = Field(description="Stopped, or past stop_time, with nothing left to dial.")
    queue: Optional[str] = None
    reason: str = ""
    hosts: Dict[str, str] = Field({}, description="The task's state on each host that reports it.")
    stopped_at: Optional[float] = None
    stopped_aside: int = Field(0, description="Numbers and redials a stop moved aside.")


class TaskStatusList(BaseModel):
    items: List[TaskStatus]


class HostInfo(BaseModel):
    host: str
    alive: bool
    heartbeat: float
    state: str
    esl: str
    redis: str
    calls_up: int
    lines_in_use: Dict[str, int]
    version: str = ""
    pid: int = 0
    started_at: float = 0
    rss_kb: int = 0
    tasks: Dict[str, Any] = {}


class HostList(BaseModel):
    items: List[HostInfo]


class HostPath(BaseModel):
    host: str = Field(min_length=1, max_length=128)


class LineInfo(BaseModel):
    name: str
    enable: bool
    capacity: int
    in_use: int
    faulted: bool = Field(description="Nothing dials on it: its JSON is refused (see error), or fault detection "
                                      "took it out of service (see out_of_service_until).")
    out_of_service_until: Optional[float] = Field(None, description="Fault detection: when its next probe call "
                                                  "may go (unix time); null while in service.")
    consecutive_failures: int = Field(0, description="Fault detection: failed calls in a row, all hosts.")
    error: Optional[str] = None
    config: Any = None


class LineList(BaseModel):
    items: List[LineInfo]


class Whoami(BaseModel):
    read_only: bool


class Health(BaseModel):
    ok: bool
    redis: Literal["ok", "down"]


# --- numbers ----------------------------------------------------------------------------------


NumberText = Union[StrictStr, StrictInt]


class NumberEntryIn(Strict):
    number: NumberText
    id: Optional[StrictStr] = Field(None, min_length=1, max_length=128,
                                    description="params.id: the same id is not dialed twice within 24 hours.")
    variables: Optional[Variables] = None


class NumbersIn(RootModel[List[Union[NumberText, NumberEntryIn]]]):
    """A JSON array: plain numbers and number entries, in dialing order (the first is dialed first)."""


class NumbersAdded(BaseModel):
    task: str
    queue: str
    added: int


class IdempotenceHeader(BaseModel):
    idempotence_key: Optional[str] = Field(
        None, alias="Idempotence-Key", min_length=1, max_length=200,
        description="Repeat a request safely: for 24 hours the same key with the same body gives the first "
                    "response again and adds nothing; with another body it gives 409.")


class CsvImported(BaseModel):
    queue: str
    imported: int
    errors: List[Dict[str, Any]] = Field(description="[{row, reason}] for each refused row (row = line number).")


class QueueLength(BaseModel):
    queue: str
    length: int


class NumbersRemove(Strict):
    numbers: List[NumberText] = []
    ids: List[StrictStr] = []


class Removed(BaseModel):
    queue: str = ""
    removed: int


class CancelIn(Strict):
    id: StrictStr = Field(min_length=1, max_length=128, description="The entry's params.id, or a redial's id.")


class Cancelled(BaseModel):
    id: str
    queued: int
    redials: int


class Switched(BaseModel):
    name: str
    enable: bool
    notified: List[Notified] = []


class Stopped(Switched):
    moved: int = Field(description="Queued numbers and pending redials moved aside.")
    moved_numbers: int
    moved_redials: int


# --- schedule --------------------------------------------------------------------------------------


class ScheduleIn(Strict):
    number: NumberText
    at: Union[StrictStr, StrictFloat, StrictInt] = Field(
        description="Unix time, '+SECONDS' from now, or 'YYYY-MM-DD HH:MM[:SS]' in the dialer's time zone.")
    config: StrictStr = Field(min_length=1, max_length=128, description="Schedule config name.")
    expires: Union[StrictStr, StrictFloat, StrictInt, None] = Field(
        None, description="Do not call after this time (same forms as at); absent or 0: never.")
    id: Optional[StrictStr] = Field(None, min_length=1, max_length=128)
    variables: Optional[Variables] = None


class ScheduledCall(BaseModel):
    at: float
    number: str
    id: Optional[str] = None
    config: str = ""
    expires: float = 0
    variables: Dict[str, str] = {}
    member: Any = None


class ScheduleQuery(Strict):
    when: Literal["all", "due", "future"] = "all"
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class ScheduleList(BaseModel):
    items: List[ScheduledCall]
    total: int


class IdPath(BaseModel):
    id: str = Field(min_length=1, max_length=128)


# --- results -------------------------------------------------------------------------------------


class ResultsQuery(Strict):
    task: Optional[str] = Field(None, max_length=128, description="Task (or schedule config) name.")
    number: Optional[str] = Field(None, max_length=64)
    id: Optional[str] = Field(None, max_length=128, description="The entry's params.id.")
    cause: Optional[str] = Field(None, max_length=64)
    since: Optional[float] = Field(None, description="Unix time: results written at or after it.")
    until: Optional[float] = Field(None, description="Unix time: results written before it.")
    limit: int = Field(100, ge=1, le=1000)
    cursor: Optional[str] = Field(None, pattern=r"^\d+-\d+$",
                                  description="The next value of the previous page: continue below it.")


class ResultsPage(BaseModel):
    items: List[Dict[str, str]] = Field(description="Result stream entries (every value a string) plus _id, "
                                                    "newest first.")
    next: Optional[str] = Field(description="Cursor of the next (older) page; null at the end.")


class StreamQuery(Strict):
    task: Optional[str] = Field(None, max_length=128)


class CausesQuery(Strict):
    task: Optional[str] = Field(None, max_length=128)
    minutes: int = Field(60, ge=1, le=1440)


class CauseBucket(BaseModel):
    t: int = Field(description="Unix time of the minute's start.")
    causes: Dict[str, int]


class CauseStats(BaseModel):
    buckets: List[CauseBucket]


# --- test call, do-not-call ----------------------------------------------------------------------


class CallIn(Strict):
    number: NumberText
    task: Optional[StrictStr] = Field(None, min_length=1, max_length=128,
                                      description="Dial through this task's queue, limits, window and lines.")
    line: Optional[StrictStr] = Field(None, min_length=1, max_length=128,
                                      description="Dial on this line (within its limit).")
    extension: StrictStr = Field("9999", min_length=1, max_length=128, description="Destination (with line).")
    context: StrictStr = Field("default", min_length=1, max_length=128, description="Dialplan context (with line).")
    timeout: float = Field(60, gt=0, le=600, description="Seconds to wait for the outcome.")


class CallOut(BaseModel):
    answered: bool
    result: Dict[str, str]


class DncIn(Strict):
    numbers: List[NumberText] = Field(min_length=1)


class DncChanged(BaseModel):
    added: int = 0
    removed: int = 0


class DncQuery(Strict):
    cursor: int = Field(0, ge=0, description="0 to start; the next value of the previous page to go on.")
    count: int = Field(500, ge=1, le=10000)


class DncPage(BaseModel):
    items: List[str]
    next: Optional[int]
    total: int


class DncPath(BaseModel):
    number: str = Field(min_length=1, max_length=64)


class DncCheck(BaseModel):
    number: str
    listed: bool
