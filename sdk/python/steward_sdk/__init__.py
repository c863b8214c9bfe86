"""The Steward plugin SDK for Python.

A plugin is a module `app.py` defining a class `Plugin(steward_sdk.Plugin)`
with `describe`, `check` and `remediate`; `steward plugin build` turns it
into a WebAssembly component with componentize-py. The capabilities are the
generated modules under `wit_world.imports` (`accounts`, `packages`,
`backups`, ...); calling one makes the component import it, and the host
refuses to run a component whose imports were not granted.

    import steward_sdk as s
    from wit_world.imports import accounts

    class Plugin(s.Plugin):
        def describe(self):
            return s.descriptor("locked", "0.1.0", "Reports locked accounts",
                                s.text("group", "Only members of this group", default="staff"))

        def check(self):
            group = s.param("group")
            return [s.finding(f"locked:{a.name}", s.CRITICAL, f"{a.name} is locked", resource=a.name)
                    for a in accounts.locked() if group in a.groups]

        def remediate(self, findings):
            return []

Errors: a capability call that fails raises `componentize_py_types.Err`
holding a host error; `check` and `remediate` turn it (and any other
exception) into the plugin error the host reports, so a plugin only catches
what it wants to handle. `s.fail("why")` ends the run with a message.
"""

import datetime as _dt
import json as _json
import traceback as _traceback

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import clock as _clock
from wit_world.imports import config as _config
from wit_world.imports import log as _log
from wit_world.imports import state as _state
from wit_world.imports import types

__all__ = [
    "Plugin", "descriptor", "boolean", "integer", "number", "text", "text_list",
    "choice", "param", "finding", "change", "failed", "field_of", "info", "warn", "error",
    "is_plan", "now", "today", "load", "save", "fail", "host_error_text",
    "CRITICAL", "WARNING", "INFO", "APPLIED", "PLANNED", "types",
]

CRITICAL = types.Severity.CRITICAL
WARNING = types.Severity.WARNING
INFO = types.Severity.INFO
APPLIED = types.Outcome.APPLIED
PLANNED = types.Outcome.PLANNED


class _PluginError(Exception):
    """Raised by `fail`: ends the run with this message."""


def fail(message):
    """Ends the run as failed with `message`."""
    raise _PluginError(str(message))


def host_error_text(err):
    """`denied: why` for a host error (the value inside an `Err`)."""
    kind = type(err).__name__.removeprefix("HostError_")
    words = "".join(" " + c.lower() if c.isupper() else c for c in kind).strip()
    return f"{words.replace(' ', '-')}: {getattr(err, 'value', err)}"


def _as_plugin_error(exc):
    if isinstance(exc, Err):
        value = exc.value
        if type(value).__name__.startswith("HostError_"):
            return types.PluginError_Host(value)
        if type(value).__name__.startswith("PluginError_"):
            return value
        return types.PluginError_Failed(str(value))
    if isinstance(exc, _PluginError):
        return types.PluginError_Failed(str(exc))
    last = _traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return types.PluginError_Failed(f"{type(exc).__name__}: {exc}{where}")


def _as_remediation(result):
    """What `remediate` returned, as the WIT's `remediation`: a list may
    mix changes and failures (`failed(...)`)."""
    if isinstance(result, types.Remediation):
        return result
    items = list(result or [])
    return types.Remediation(
        changes=[c for c in items if isinstance(c, types.Change)],
        failures=[f for f in items if isinstance(f, types.Failure)],
    )


def _guarded(fn, remediate=False):
    def run(*args):
        try:
            result = fn(*args)
            return _as_remediation(result) if remediate else result
        except Exception as exc:  # every failure becomes the plugin's error
            raise Err(_as_plugin_error(exc))
    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


class Plugin(_exports.Plugin):
    """Subclass as `Plugin` in `app.py`; `check` and `remediate` are wrapped
    so every error reaches the host as a plugin error."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("check", "remediate"):
            if name in cls.__dict__:
                setattr(cls, name, _guarded(cls.__dict__[name], remediate=name == "remediate"))

    def remediate(self, findings):
        return types.Remediation(changes=[], failures=[])


# Descriptor and parameters. A default is written once, here; `param`
# returns it when the caller gave none.

def descriptor(name, version, summary, *params, scope="device"):
    """What `describe` returns; `scope` is "device" or "tenant"."""
    return types.Descriptor(
        name=name,
        version=version,
        summary=summary,
        params=list(params),
        scope=types.PluginScope.TENANT if scope == "tenant" else types.PluginScope.DEVICE,
    )


def _spec(name, kind, description, default, wrap, required, to_remediate=False, pattern=None):
    return types.ParamSpec(
        name=name,
        type=kind,
        description=description,
        default=None if default is None else wrap(default),
        required=required,
        required_to_remediate=to_remediate,
        pattern=pattern,
    )


def boolean(name, description, default=None, required=False):
    return _spec(name, types.ParamType.BOOLEAN, description, default, types.ParamValue_Boolean, required)


def integer(name, description, default=None, required=False):
    return _spec(name, types.ParamType.INTEGER, description, default, types.ParamValue_Integer, required)


def number(name, description, default=None, required=False):
    return _spec(name, types.ParamType.FLOAT, description, default, types.ParamValue_Float, required)


def text(name, description, default=None, required=False, required_to_remediate=False, pattern=None):
    """A text parameter; `required_to_remediate` (needed to fix, not to
    check) and `pattern` (a regular expression the value must match whole)
    are checked by the host before the run."""
    return _spec(name, types.ParamType.TEXT, description, default, types.ParamValue_Text, required,
                 required_to_remediate, pattern)


def text_list(name, description, default=None, required=False, required_to_remediate=False, pattern=None):
    return _spec(name, types.ParamType.TEXT_LIST, description, default, types.ParamValue_TextList, required,
                 required_to_remediate, pattern)


_choices = {}


def choice(name, description, options, default=None, required=False):
    """A text parameter that must be one of `options` (checked by `param`)."""
    _choices[name] = list(options)
    listed = ", ".join(options)
    return text(name, f"{description} (one of: {listed})", default, required)


def param(name):
    """The parameter's value as a Python value (its default when not
    given), or None when it has neither."""
    value = _config.get(name)
    if value is None:
        return None
    value = value.value
    if name in _choices and value not in _choices[name]:
        raise Err(types.PluginError_InvalidParam(types.ParamProblem(
            name=name, message=f"must be one of {', '.join(_choices[name])}, not {value!r}")))
    return value


def is_plan():
    """Whether this run only plans (mutating calls record intent)."""
    return _config.mode() == types.RunMode.PLAN


# Findings and changes.

def finding(id, severity, summary, detail="", resource="", **fields):
    """A finding; keyword arguments become its fields (`set="nightly"`)."""
    return types.Finding(
        id=id,
        severity=severity,
        summary=summary,
        detail=detail,
        resource=resource,
        fields=[types.Field(key=k.replace("_", "-"), value=str(v)) for k, v in fields.items()],
    )


def failed(finding, error):
    """A finding `remediate` could not fix (a finding or its id), and why:
    return it among the changes; the job ends failed, the changes kept."""
    finding_id = finding if isinstance(finding, str) else finding.id
    if isinstance(error, Err):
        error = host_error_text(error.value)
    return types.Failure(finding_id=finding_id, error=str(error))


def field_of(finding, key):
    """The value of a finding's field, or None."""
    for f in finding.fields:
        if f.key == key:
            return f.value
    return None


def change(kind, target, outcome, description="", before=None, after=None):
    """A change a remediation made (or planned)."""
    return types.Change(
        kind=kind, target=target, description=description,
        before=None if before is None else str(before),
        after=None if after is None else str(after),
        outcome=outcome,
    )


# Logging: one line, structured fields.

def _emit(level, message, fields):
    _log.emit(level, str(message), [types.Field(key=k.replace("_", "-"), value=str(v)) for k, v in fields.items()])


def info(message, **fields):
    _emit(_log.Level.INFO, message, fields)


def warn(message, **fields):
    _emit(_log.Level.WARN, message, fields)


def error(message, **fields):
    _emit(_log.Level.ERROR, message, fields)


# Time: the device's clock (fixed on simulated devices) as datetimes.

def now():
    """The device's clock as an aware UTC datetime."""
    t = _clock.now()
    return _dt.datetime.fromtimestamp(t.seconds, _dt.timezone.utc) + _dt.timedelta(microseconds=t.nanoseconds // 1000)


def today():
    """The device's date (UTC)."""
    return now().date()


def instant_to_datetime(t):
    """A WIT `instant` as an aware UTC datetime."""
    return _dt.datetime.fromtimestamp(t.seconds, _dt.timezone.utc)


def to_date(d):
    """A WIT `date` (`os.end_of_life`, `admin.warranty_end`) as a
    `datetime.date`, so `to_date(eol) - today()` is a `timedelta`."""
    return _dt.date(d.year, d.month, d.day)


def from_date(d):
    """A `datetime.date` as a WIT `date` (a ticket's `due`)."""
    return types.Date(year=d.year, month=d.month, day=d.day)


def days_until(d):
    """Whole days from the device's today to `d` (a WIT `date` or a
    `datetime.date`); negative once it has passed."""
    if not isinstance(d, _dt.date):
        d = to_date(d)
    return (d - today()).days


# Typed state: any JSON value per key, kept by the host per plugin and
# device (writes take effect in plan mode too).

def _encode(value):
    # Dates and datetimes are stored as ISO 8601 text.
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be stored in plugin state")


def load(key, default=None):
    """The JSON value stored under `key`, or `default` (also when what is
    stored no longer parses)."""
    text = _state.get(key)
    if text is None:
        return default
    try:
        return _json.loads(text)
    except ValueError:
        return default


def load_date(key):
    """A date stored with `save`, or None."""
    text = load(key)
    try:
        return _dt.date.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def save(key, value):
    """Stores any JSON value (dates as ISO text) under `key`."""
    _state.set(key, _json.dumps(value, separators=(",", ":"), sort_keys=True, default=_encode))
