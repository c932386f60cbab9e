"""Settings declared once, read from an environment-like mapping.

A setting is a dataclass field made by :func:`setting`: its variable's name,
parser, default (as it would be written in the environment), help text and
secret flag sit next to the field they fill. :func:`load` walks the
declarations (sections nest with :func:`section`), collects every problem
instead of stopping at the first, and raises one :class:`ConfigError`.
Everything else (``describe()``, the documentation tables, the list of known
variables) is derived from the same declarations.

A leaf: it imports nothing of the bridge. Only entry points pass it the real
environment; everything else receives the settings it builds.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=enum.StrEnum)

_VARIABLE: Final = "variable"
_SECTION: Final = "section"
#: ``{NAME}`` in a default stands for the value of variable NAME (e.g. a topic prefix).
_PLACEHOLDER: Final = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


class ConfigError(ValueError):
    """Configuration is invalid; ``problems`` lists every bad variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration ({len(problems)} problem(s)):\n{lines}")


@dataclasses.dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable and how it fills its field.

    ``template`` is the default as declared (``None``: required), possibly naming
    other variables as ``{NAME}``; ``default`` is that with the other variables'
    defaults filled in, i.e. what an unset variable means in a default setup.
    ``internal`` variables are set by the bridge for itself, not by users.
    """

    name: str
    parse: Callable[[str], Any]
    template: str | None
    default: str | None
    help: str
    secret: bool = False
    internal: bool = False


class Declarations:
    """The variables one settings module declares, in declaration order."""

    def __init__(self) -> None:
        self.variables: dict[str, Variable] = {}

    def setting(
        self,
        name: str,
        parse: Callable[[str], T],
        default: str | None,
        help: str,  # noqa: A002 - the word the tables use
        *,
        secret: bool = False,
        internal: bool = False,
    ) -> T:
        """A dataclass field filled from variable ``name``; its default is ``parse(default)``."""
        expanded = None if default is None else expand(default, {}, self.variables)
        variable = Variable(name, parse, default, expanded, help, secret, internal)
        if name in self.variables:
            raise ValueError(f"{name} is declared twice")
        self.variables[name] = variable
        metadata = {_VARIABLE: variable}
        if expanded is None:
            return dataclasses.field(metadata=metadata, repr=not secret)  # type: ignore[no-any-return]
        value = parse(expanded)
        return dataclasses.field(default=value, metadata=metadata, repr=not secret)

    def user_variables(self) -> dict[str, Variable]:
        """The variables a user sets (the documented ones)."""
        return {name: v for name, v in self.variables.items() if not v.internal}


def expand(template: str, env: Mapping[str, str], variables: Mapping[str, Variable]) -> str:
    """``template`` with each ``{NAME}`` replaced by that variable's value in ``env``, else its default."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        raw = env.get(name)
        if raw is not None and raw.strip():
            return raw.strip()
        return variables[name].default or ""

    return _PLACEHOLDER.sub(value, template)


def section(kind: Callable[[], T]) -> T:
    """A dataclass field holding a nested settings section, loaded with its parent."""
    return dataclasses.field(default_factory=kind, metadata={_SECTION: kind})


class Reader:
    """Loads declared settings from ``env``, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], variables: Mapping[str, Variable]) -> None:
        self.env = env
        self._variables = variables
        self.problems: list[str] = []
        #: Names whose value was rejected (their problem is reported already).
        self.failed: set[str] = set()

    def load(self, kind: type[T]) -> T:
        """An instance of the settings dataclass ``kind``, every declared field read from ``env``.

        A section's cross-variable rules run after its fields are read: a method
        ``problems(self, failed)`` returning messages, given the names that failed.
        """
        values: dict[str, Any] = {}
        for f in dataclasses.fields(kind):  # type: ignore[arg-type]
            if _VARIABLE in f.metadata:
                values[f.name] = self.read(f.metadata[_VARIABLE], f.default)
            elif _SECTION in f.metadata:
                values[f.name] = self.load(f.metadata[_SECTION])
        instance = kind(**values)
        check = getattr(instance, "problems", None)
        if check is not None:
            self.problems += check(frozenset(self.failed))
        return instance

    def read(self, variable: Variable, fallback: Any) -> Any:
        """The parsed value of ``variable``; on a problem, ``fallback`` stands in so all get reported."""
        raw = self.env.get(variable.name)
        if raw is None:
            if variable.template is None:
                self.problems.append(f"{variable.name} is required: {variable.help}")
                self.failed.add(variable.name)
                return fallback
            if set(_PLACEHOLDER.findall(variable.template)) & self.failed:
                return fallback  # built from a variable whose problem is reported already
            raw = expand(variable.template, self.env, self._variables)
        try:
            return variable.parse(raw.strip())
        except ValueError as exc:
            shown = "<redacted>" if variable.secret else repr(raw)
            self.problems.append(f"{variable.name}={shown}: {exc}")
            self.failed.add(variable.name)
            return fallback


def load(kind: type[T], env: Mapping[str, str], variables: Mapping[str, Variable]) -> T:
    """``kind`` read from ``env``; :class:`ConfigError` listing every problem."""
    reader = Reader(env, variables)
    settings = reader.load(kind)
    if reader.problems:
        raise ConfigError(reader.problems)
    return settings


def declared(kind: type) -> dict[str, Variable]:
    """Every variable the settings dataclass ``kind`` reads (sections included), in field order."""
    found: dict[str, Variable] = {}
    for f in dataclasses.fields(kind):
        if _VARIABLE in f.metadata:
            found[f.metadata[_VARIABLE].name] = f.metadata[_VARIABLE]
        elif _SECTION in f.metadata:
            found |= declared(f.metadata[_SECTION])
    return found


def walk(settings: object) -> Iterator[tuple[Variable, Any]]:
    """Every declared variable of ``settings`` (sections included) with its value, in order."""
    for f in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        if _VARIABLE in f.metadata:
            yield f.metadata[_VARIABLE], value
        elif _SECTION in f.metadata:
            yield from walk(value)


def describe(settings: object) -> dict[str, object]:
    """The effective configuration as plain JSON data, keyed by variable; secrets never shown.

    A secret list shows how many entries it has, another secret only whether it is set.
    """
    described: dict[str, object] = {}
    for variable, value in walk(settings):
        if variable.internal:
            continue
        if variable.secret:
            described[variable.name] = (
                len(value) if isinstance(value, tuple) else ("<redacted>" if value else None)
            )
        else:
            described[variable.name] = _plain(value)
    return described


def _plain(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value):
        return str(value)
    return value


# --- parsers: each takes the stripped raw value and raises ValueError saying what is wrong -----------


def csv(raw: str) -> tuple[str, ...]:
    """Comma-separated entries, blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def optional(raw: str) -> str | None:
    """The value, or None when empty."""
    return raw or None


def optional_file(raw: str) -> str | None:
    """A readable file's path, or None when empty."""
    if not raw:
        return None
    if not Path(raw).is_file() or not os.access(raw, os.R_OK):
        raise ValueError("no readable file there")
    return raw


def nonempty(raw: str) -> str:
    """Any value but the empty one."""
    if not raw:
        raise ValueError("must not be empty")
    return raw


def boolean(raw: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off)."""
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def on_off(raw: str) -> bool:
    """``on``/``off`` (also true/false, 1/0, yes/no)."""
    try:
        return boolean(raw)
    except ValueError:
        raise ValueError("expected on or off") from None


def int_range(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    """A number of seconds from ``low`` to ``high``."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number of seconds") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g} seconds")
        return value

    return parse


def one_of(kind: type[E], *, upper: bool = False) -> Callable[[str], E]:
    """A member of the string enum ``kind``, case-insensitively."""

    def parse(raw: str) -> E:
        try:
            return kind(raw.upper() if upper else raw.lower())
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise ValueError(f"expected one of: {allowed}") from None

    return parse
