"""Flow definitions: steps, their dependencies and execution settings, checked before they are kept.

A step is ``{id, name?, type, config, executeIf?, dependsOn?, retry?, timeout?}``; ``config.critical``
marks a step whose failure fails the execution. Without ``dependsOn`` a step depends on the step
before it. ``parse_definition`` refuses, naming the step and the field: duplicate ids, unknown
dependencies, cycles, unknown types, configs of the wrong shape for their type, unknown settings,
and documents over the limits (counted in UTF-8 bytes). (Issue 4 builds the engine on this; the Flow
entity adopts it there.)

Definitions stored before some rules existed must go on running as they did: ``stored=True`` skips
those rules (unknown keys in ``settings`` and ``settings.execution``, the shape of an
``http_request`` url, blank action references), which a stored flow that breaks them survived at
run time (an unusable url or action fails only its step). Every create and update checks them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from domain.code_language import LANGUAGES, canonical
from domain.rules import URL_MAX, Problems, type_name
from domain.tool import HTTP_METHODS

STEPS_MAX = 500
STEP_BYTES_MAX = 64 * 1024
DEFINITION_BYTES_MAX = 1024 * 1024
TIMEOUT_MS_MAX = 24 * 3600 * 1000
DELAY_MS_MAX = 30 * 24 * 3600 * 1000
RETRIES_MAX = 20
BACKOFF = ("exponential", "fixed")
_STEP_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_STEP_KEYS = {"id", "name", "type", "config", "executeIf", "dependsOn", "retry", "timeout"}
_SETTINGS_KEYS = {"execution"}
_EXECUTION_KEYS = {"concurrency", "timeout", "retryPolicy"}
_RETRY_KEYS = {"maxRetries", "backoffStrategy", "baseDelayMs", "maxDelayMs"}
_SCHEMES = ("http://", "https://")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 0
    backoff: str = "exponential"
    base_delay_ms: int = 1000
    max_delay_ms: int = 60_000

    def delay_ms(self, attempt: int) -> int:
        """Delay before retry number ``attempt`` (1-based), capped by ``max_delay_ms``."""
        if self.backoff == "fixed":
            return min(self.base_delay_ms, self.max_delay_ms)
        return min(self.base_delay_ms * 2 ** (attempt - 1), self.max_delay_ms)


@dataclass(frozen=True, slots=True)
class StepDefinition:
    id: str
    name: str
    type: str
    config: dict[str, Any]
    depends_on: tuple[str, ...]
    execute_if: str | None = None
    retry: RetryPolicy | None = None  # None: the flow's policy applies
    timeout_ms: int | None = None

    @property
    def critical(self) -> bool:
        return bool(self.config.get("critical", False))


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    concurrency: int | None = None
    timeout_ms: int | None = None
    retry: RetryPolicy = RetryPolicy()


@dataclass(frozen=True, slots=True)
class FlowDefinition:
    steps: tuple[StepDefinition, ...]
    settings: ExecutionSettings
    order: tuple[str, ...]  # a topological order of the step ids
    _by_id: dict[str, StepDefinition] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {s.id: s for s in self.steps})

    def step(self, step_id: str) -> StepDefinition:
        return self._by_id[step_id]

    def reusable(self, completed: Iterable[str]) -> tuple[str, ...]:
        """Of the steps an earlier execution completed, those a resumed one keeps: each whose
        every dependency is kept as well. A step after one that runs again runs again too (its
        inputs may change), so a resume starts at the first step that did not complete."""
        done, kept = set(completed), set()
        for step_id in self.order:
            if step_id in done and kept.issuperset(self._by_id[step_id].depends_on):
                kept.add(step_id)
        return tuple(s for s in self.order if s in kept)


def _json_bytes(value: Any) -> int:
    """The size of a JSON document in UTF-8 bytes (``é`` is 2, not the 6 of its ``\\u00e9`` escape)."""
    return len(json.dumps(value, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass"))


# --- per-type config shapes ------------------------------------------------------------------------

Check = Callable[[Problems, str, Any], None]


def _str(required: bool = False, max_len: int = 100_000) -> Check:
    def check(p: Problems, where: str, value: Any) -> None:
        if value is None:
            if required:
                p.add(where, "Required", "required")
        elif not isinstance(value, str):
            p.add(where, f"Expected string, received {type_name(value)}", "invalid_type")
        elif required and not value.strip():
            p.add(where, "Must not be empty", "too_small")
        elif len(value) > max_len:
            p.add(where, f"At most {max_len} characters", "too_big")

    return check


def _int(low: int, high: int) -> Check:
    def check(p: Problems, where: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            p.add(where, f"Expected integer, received {type_name(value)}", "invalid_type")
        elif not low <= value <= high:
            p.add(where, f"Must be between {low} and {high}", "too_small" if value < low else "too_big")

    return check


def _bool(p: Problems, where: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        p.add(where, f"Expected boolean, received {type_name(value)}", "invalid_type")


def _one_of(options: tuple[str, ...]) -> Check:
    def check(p: Problems, where: str, value: Any) -> None:
        if value is not None and value not in options:
            expected = " | ".join(f"'{o}'" for o in options)
            p.add(where, f"Invalid enum value. Expected {expected}, received '{value}'", "invalid_enum_value")

    return check


def _object(p: Problems, where: str, value: Any) -> None:
    if value is not None and not isinstance(value, dict):
        p.add(where, f"Expected object, received {type_name(value)}", "invalid_type")


def _any(_p: Problems, _where: str, _value: Any) -> None:
    return None


def _language(p: Problems, where: str, value: Any) -> None:
    """One of LANGUAGES, in any case or by a usual short name (``js``, ``py``, ``golang``, ``rs``)."""
    if value is not None and (not isinstance(value, str) or canonical(value) not in LANGUAGES):
        expected = " | ".join(f"'{o}'" for o in LANGUAGES)
        shown = value if isinstance(value, str) else type_name(value)
        p.add(where, f"Invalid enum value. Expected {expected}, received '{shown}'", "invalid_enum_value")


_SANDBOX = {"code": _str(required=True), "language": _language}
_POLLING = {
    "waitForCompletion": _bool,
    "pollInterval": _int(100, 600_000),
    "maxPollAttempts": _int(1, 10_000),
}
CONFIGS: dict[str, dict[str, Check]] = {
    "http_request": {
        "url": _str(required=True, max_len=URL_MAX),
        "method": _one_of(HTTP_METHODS),
        "headers": _object,
        "query": _object,
        "body": _any,
        "timeout": _int(1, TIMEOUT_MS_MAX),
    },
    "action": {"actionId": _str(), "actionKey": _str(max_len=64), "inputs": _object},
    "data_transform": {"script": _str(required=True), "useSandbox": _bool},
    "conditional": {"condition": _str(required=True, max_len=10_000), "useSandbox": _bool},
    "code_execution": {**_SANDBOX, "mode": _one_of(("sync", "async")), **_POLLING},
    "sandbox_sync": dict(_SANDBOX),
    "sandbox_async": {**_SANDBOX, **_POLLING},
    "delay": {"ms": _int(0, DELAY_MS_MAX)},
}
STEP_TYPES = tuple(CONFIGS)


def _http_url_ok(url: str) -> bool:
    """An absolute http(s) URL with a host; a templated one (``{{...}}``) is only known when it runs,
    so the text before its first placeholder need only be on the way to ``http(s)://``: empty
    (``{{variables.endpoint}}``), a start of the scheme, or the scheme and more."""
    head, templated, _ = url.partition("{{")
    if templated:
        head = head.strip().lower()  # a whole-value template may have spaces around it
        return any(head.startswith(s) or s.startswith(head) for s in _SCHEMES)
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _http_url(p: Problems, where: str, label: str, url: Any) -> None:
    """An ``http_request``'s url that could never be called (its type and length are checked apart)."""
    if isinstance(url, str) and url.strip() and len(url) <= URL_MAX and not _http_url_ok(url):
        p.add(
            where,
            f"{label}: url must be an absolute http(s) URL (or start with a {{{{template}}}})",
            "invalid_string",
        )


def _action_references(p: Problems, where: str, label: str, config: dict[str, Any]) -> None:
    """``actionId`` or ``actionKey`` names the action run; one that is only spaces names none. An
    empty one alongside the other is passed over when it runs, so it is let be."""
    for key in ("actionId", "actionKey"):
        value = config.get(key)
        if isinstance(value, str) and value and not value.strip():
            p.add(f"{where}.{key}", f"{label}: {key} must not be blank", "invalid_string")


def _config(
    p: Problems, where: str, label: str, kind: str, config: Any, stored: bool = False
) -> dict[str, Any]:
    if config is None:
        config = {}
    if not isinstance(config, dict):
        p.add(where, f"{label}: config must be an object", "invalid_type")
        return {}
    shape = CONFIGS[kind]
    for key in sorted(set(config) - set(shape) - {"critical"}):
        p.add(f"{where}.{key}", f"{label}: '{key}' is not a {kind} setting", "unrecognized_keys")
    _bool(p, f"{where}.critical", config.get("critical"))
    for key, check in shape.items():
        check(p, f"{where}.{key}", config.get(key))
    if kind == "http_request" and not stored:
        _http_url(p, f"{where}.url", label, config.get("url"))
    if kind == "action":
        if not (config.get("actionId") or config.get("actionKey")):
            p.add(where, f"{label}: an action step needs actionId or actionKey", "required")
        if not stored:
            _action_references(p, where, label, config)
    if kind == "delay" and config.get("ms") is None:
        p.add(f"{where}.ms", f"{label}: a delay step needs ms", "required")
    return config


def _retry(p: Problems, where: str, raw: Any) -> RetryPolicy | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        p.add(where, "retry must be an object", "invalid_type")
        return None
    for key in sorted(set(raw) - _RETRY_KEYS):
        p.add(f"{where}.{key}", f"'{key}' is not a retry setting", "unrecognized_keys")
    _int(0, RETRIES_MAX)(p, f"{where}.maxRetries", raw.get("maxRetries"))
    _one_of(BACKOFF)(p, f"{where}.backoffStrategy", raw.get("backoffStrategy"))
    _int(0, TIMEOUT_MS_MAX)(p, f"{where}.baseDelayMs", raw.get("baseDelayMs"))
    _int(0, TIMEOUT_MS_MAX)(p, f"{where}.maxDelayMs", raw.get("maxDelayMs"))
    base, top = raw.get("baseDelayMs", 1000), raw.get("maxDelayMs", 60_000)
    if isinstance(base, int) and isinstance(top, int) and base > top:
        p.add(where, f"baseDelayMs ({base}) is greater than maxDelayMs ({top})", "invalid_range")
    try:
        return RetryPolicy(
            int(raw.get("maxRetries", 0)), str(raw.get("backoffStrategy", "exponential")), int(base), int(top)
        )
    except (TypeError, ValueError):
        return None


def _settings(p: Problems, raw: Any, stored: bool = False) -> ExecutionSettings:
    if raw is None:
        return ExecutionSettings()
    if not isinstance(raw, dict):
        p.add("settings", "settings must be an object", "invalid_type")
        return ExecutionSettings()
    if not stored:
        for key in sorted(set(raw) - _SETTINGS_KEYS, key=str):
            p.add(
                f"settings.{key}", f"'{key}' is not a flow setting (expected execution)", "unrecognized_keys"
            )
    execution = raw.get("execution")
    if execution is None:
        return ExecutionSettings()
    if not isinstance(execution, dict):
        p.add("settings.execution", "execution must be an object", "invalid_type")
        return ExecutionSettings()
    if not stored:
        for key in sorted(set(execution) - _EXECUTION_KEYS, key=str):
            expected = ", ".join(sorted(_EXECUTION_KEYS))
            p.add(
                f"settings.execution.{key}",
                f"'{key}' is not an execution setting (expected {expected})",
                "unrecognized_keys",
            )
    _int(1, 1000)(p, "settings.execution.concurrency", execution.get("concurrency"))
    _int(1, TIMEOUT_MS_MAX)(p, "settings.execution.timeout", execution.get("timeout"))
    retry = _retry(p, "settings.execution.retryPolicy", execution.get("retryPolicy")) or RetryPolicy()
    concurrency, timeout = execution.get("concurrency"), execution.get("timeout")
    return ExecutionSettings(
        concurrency if isinstance(concurrency, int) and not isinstance(concurrency, bool) else None,
        timeout if isinstance(timeout, int) and not isinstance(timeout, bool) else None,
        retry,
    )


def _step(
    p: Problems, index: int, raw: Any, previous: str | None, stored: bool = False
) -> StepDefinition | None:
    where = f"steps.{index}"
    if not isinstance(raw, dict):
        p.add(where, f"Expected object, received {type_name(raw)}", "invalid_type")
        return None
    before = len(p.errors)
    step_id = raw.get("id")
    if not isinstance(step_id, str) or not _STEP_ID.fullmatch(step_id):
        p.add(f"{where}.id", "Step id is required: up to 64 letters, digits, '_' or '-'", "invalid_string")
        step_id = f"#{index}"
    label = f"Step '{step_id}'"
    if _json_bytes(raw) > STEP_BYTES_MAX:
        p.add(where, f"{label} is larger than {STEP_BYTES_MAX} bytes", "too_big")
    for key in sorted(set(raw) - _STEP_KEYS):
        p.add(f"{where}.{key}", f"{label}: unknown step property '{key}'", "unrecognized_keys")
    kind = raw.get("type")
    expected = " | ".join(f"'{t}'" for t in STEP_TYPES)
    config: dict[str, Any] = {}
    if kind is None:
        p.add(f"{where}.type", f"{label}: type is required; expected {expected}", "required")
    elif kind not in CONFIGS:
        p.add(
            f"{where}.type", f"{label}: unknown step type '{kind}'; expected {expected}", "invalid_enum_value"
        )
    else:
        config = _config(p, f"{where}.config", label, kind, raw.get("config"), stored)
    _str(max_len=200)(p, f"{where}.name", raw.get("name"))
    _str(max_len=10_000)(p, f"{where}.executeIf", raw.get("executeIf"))
    _int(1, TIMEOUT_MS_MAX)(p, f"{where}.timeout", raw.get("timeout"))
    depends = raw.get("dependsOn")
    if depends is None:
        depends = [previous] if previous else []
    elif not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        p.add(f"{where}.dependsOn", f"{label}: dependsOn must be a list of step ids", "invalid_type")
        depends = []
    retry = _retry(p, f"{where}.retry", raw.get("retry"))
    if len(p.errors) > before:
        return None
    return StepDefinition(
        id=step_id,
        name=raw.get("name") or step_id,
        type=kind,
        config=config,
        depends_on=tuple(dict.fromkeys(depends)),
        execute_if=raw.get("executeIf"),
        retry=retry,
        timeout_ms=raw.get("timeout"),
    )


def parse_definition(steps: Any, settings: Any = None, *, stored: bool = False) -> FlowDefinition:
    """Check a flow's steps and settings; ValidationFailed names each step and field at fault.
    ``stored``: a definition already kept, read to run it (the module's docstring says what that
    lets pass)."""
    p = Problems()
    if not isinstance(steps, list):
        p.add("steps", f"Expected array, received {type_name(steps)}", "invalid_type")
        p.raise_if_any()
    if len(steps) > STEPS_MAX:
        p.add("steps", f"A flow has at most {STEPS_MAX} steps", "too_big")
        p.raise_if_any()
    if _json_bytes(steps) > DEFINITION_BYTES_MAX:
        p.add("steps", f"The steps are larger than {DEFINITION_BYTES_MAX} bytes", "too_big")
    execution = _settings(p, settings, stored)
    parsed: list[StepDefinition] = []
    seen: dict[str, int] = {}
    previous: str | None = None
    for index, raw in enumerate(steps):
        step = _step(p, index, raw, previous, stored)
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(raw_id, str):
            if raw_id in seen:
                p.add(
                    f"steps.{index}.id",
                    f"Step id '{raw_id}' is used by steps {seen[raw_id]} and {index}",
                    "duplicate",
                )
            seen.setdefault(raw_id, index)
            previous = raw_id
        if step is not None:
            parsed.append(step)
    for index, step in enumerate(parsed):
        for dependency in step.depends_on:
            if dependency not in seen:
                p.add(
                    f"steps.{seen.get(step.id, index)}.dependsOn",
                    f"Step '{step.id}' depends on unknown step '{dependency}'",
                    "invalid_reference",
                )
    p.raise_if_any()
    order = _topological(p, parsed, seen)
    p.raise_if_any()
    return FlowDefinition(tuple(parsed), execution, order)


def _topological(p: Problems, steps: list[StepDefinition], index: dict[str, int]) -> tuple[str, ...]:
    """Kahn's algorithm, in declaration order among ready steps; what is left over holds a cycle,
    reported at ``dependsOn`` of its first step (in declaration order)."""
    waiting = {s.id: set(s.depends_on) for s in steps}
    order: list[str] = []
    ready = [s.id for s in steps if not waiting[s.id]]
    while ready:
        current = ready.pop(0)
        order.append(current)
        for s in steps:
            if current in waiting[s.id]:
                waiting[s.id].discard(current)
                if not waiting[s.id]:
                    ready.append(s.id)
    if len(order) < len(steps):
        cycle = _a_cycle(steps, set(order))
        first = min(cycle, key=index.__getitem__)
        at = cycle.index(first)
        cycle = cycle[at:] + cycle[:at]
        shown = " -> ".join([*cycle, first])
        p.add(
            f"steps.{index[first]}.dependsOn",
            f"Steps form a dependency cycle: {shown} (each depends on the next)",
            "cycle",
        )
    return tuple(order)


def _a_cycle(steps: list[StepDefinition], ordered: set[str]) -> list[str]:
    """A cycle among the steps Kahn's algorithm could not order: each of them waits on another such
    step, so following those from the first one comes back to a step already passed."""
    by_id = {s.id: s for s in steps}
    path: list[str] = []
    position: dict[str, int] = {}
    current = next(s.id for s in steps if s.id not in ordered)
    while current not in position:
        position[current] = len(path)
        path.append(current)
        current = next(d for d in by_id[current].depends_on if d not in ordered)
    return path[position[current] :]
