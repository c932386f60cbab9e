"""The declaration machinery (bridge/envconfig.py), on a small settings class of its own."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from bridge.envconfig import ConfigError, Declarations, declared, describe, int_range, load, nonempty, section

DECLARED = Declarations()
env = DECLARED.setting


def _word(raw: str) -> str:
    if not raw or " " in raw:
        raise ValueError("one word, please")
    return raw


@dataclass(frozen=True, slots=True)
class _Inner:
    prefix: str = env("X_PREFIX", _word, "base", "A prefix.")
    derived: str = env("X_DERIVED", _word, "{X_PREFIX}.tail", "Built from the prefix.")
    count: int = env("X_COUNT", int_range(1, 5), "2", "How many.")

    def problems(self, failed: frozenset[str]) -> list[str]:
        return ["X_COUNT must not be 4"] if self.count == 4 and "X_COUNT" not in failed else []


@dataclass(frozen=True, slots=True)
class _Outer:
    required: str = env("X_REQUIRED", nonempty, None, "Needed.")
    secret: str = env("X_SECRET", nonempty, "default-secret", "A secret.", secret=True)
    inner: _Inner = section(_Inner)  # noqa: RUF009 - section() returns a dataclasses.field


def test_a_field_default_is_the_declared_default_parsed_and_a_template_uses_the_others_defaults():
    assert _Inner() == _Inner(prefix="base", derived="base.tail", count=2)
    assert DECLARED.variables["X_DERIVED"].template == "{X_PREFIX}.tail"
    assert DECLARED.variables["X_DERIVED"].default == "base.tail"


def test_a_template_follows_the_variable_it_names_and_an_explicit_value_wins():
    assert load(_Outer, {"X_REQUIRED": "r", "X_PREFIX": "p"}, DECLARED.variables).inner.derived == "p.tail"
    loaded = load(_Outer, {"X_REQUIRED": "r", "X_PREFIX": "p", "X_DERIVED": "own"}, DECLARED.variables)
    assert loaded.inner.derived == "own"


def test_every_problem_at_once_secrets_redacted_and_nothing_said_twice():
    env_ = {"X_SECRET": "", "X_PREFIX": "a b", "X_COUNT": "9"}
    with pytest.raises(ConfigError) as info:
        load(_Outer, env_, DECLARED.variables)
    assert info.value.problems == [
        "X_REQUIRED is required: Needed.",
        "X_SECRET=<redacted>: must not be empty",
        "X_PREFIX='a b': one word, please",
        # X_DERIVED is built from the bad prefix: its problem is the prefix's, not said again.
        "X_COUNT='9': must be between 1 and 5",
    ]


def test_a_sections_rules_across_variables_run_after_its_fields():
    with pytest.raises(ConfigError, match="X_COUNT must not be 4"):
        load(_Outer, {"X_REQUIRED": "r", "X_COUNT": "4"}, DECLARED.variables)


def test_describe_keys_by_variable_and_never_shows_a_secret():
    described = describe(load(_Outer, {"X_REQUIRED": "r"}, DECLARED.variables))
    assert described == {
        "X_REQUIRED": "r",
        "X_SECRET": "<redacted>",
        "X_PREFIX": "base",
        "X_DERIVED": "base.tail",
        "X_COUNT": 2,
    }
    assert list(declared(_Outer)) == list(described)


def test_a_variable_declared_twice_is_refused():
    with pytest.raises(ValueError, match="X_COUNT is declared twice"):
        DECLARED.setting("X_COUNT", nonempty, "x", "Again.")


def test_a_secret_field_is_kept_out_of_repr():
    loaded = load(_Outer, {"X_REQUIRED": "r", "X_SECRET": "hunter2-hunter2"}, DECLARED.variables)
    assert "hunter2" not in repr(loaded)
    assert [f.repr for f in dataclasses.fields(_Outer)] == [True, False, True]
