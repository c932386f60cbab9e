"""`altinn-bridge check-config` (and `serve`, before it connects): what the operator sees.

A compression codec that cannot be imported fails the configuration (exit 2, naming the codec
and the package) instead of a Kafka connect loop; unknown ``BRIDGE_*`` variables are warned
about as ``serve`` does. The image's own install is checked in tests/deploy/test_codecs.py.
"""

from __future__ import annotations

import sys

import orjson
import pytest

from bridge.cli import main
from bridge.config import ConfigError, Settings

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "BRIDGE_AUTH": "none"}


@pytest.fixture
def without_cramjam(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import cramjam`` fails, as where the package is not installed."""
    monkeypatch.setitem(sys.modules, "cramjam", None)


@pytest.mark.usefixtures("without_cramjam")
@pytest.mark.parametrize("codec", ["lz4", "zstd", "snappy"])
def test_check_config_exits_2_naming_a_codec_that_cannot_be_imported(capsys, codec):
    assert main(["check-config"], env={**BASE, "KAFKA_COMPRESSION": codec}) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"KAFKA_COMPRESSION={codec} needs the Python package 'cramjam'" in err


@pytest.mark.usefixtures("without_cramjam")
def test_serve_exits_2_before_connecting_when_the_codec_is_missing(capsys):
    # The bootstrap server does not exist: getting as far as connecting would hang in retries.
    assert main(["serve"], env={**BASE, "KAFKA_COMPRESSION": "zstd"}) == 2
    assert "KAFKA_COMPRESSION=zstd needs the Python package 'cramjam'" in capsys.readouterr().err


@pytest.mark.usefixtures("without_cramjam")
@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_codecs_without_a_package_need_none(codec):
    assert Settings.from_env({**BASE, "KAFKA_COMPRESSION": codec}).kafka.compression == codec


@pytest.mark.usefixtures("without_cramjam")
def test_the_codec_problem_is_listed_with_the_others():
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE, "KAFKA_COMPRESSION": "lz4", "KAFKA_LINGER_MS": "-1"})
    assert [p.split("=")[0] for p in raised.value.problems] == ["KAFKA_LINGER_MS", "KAFKA_COMPRESSION"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_every_codec_passes_where_it_is_installed(capsys, codec):
    assert main(["check-config"], env={**BASE, "KAFKA_COMPRESSION": codec}) == 0
    assert orjson.loads(capsys.readouterr().out)["KAFKA_COMPRESSION"] == codec


def test_check_config_warns_about_unknown_bridge_variables(capsys):
    env = {**BASE, "BRIDGE_TOPIC_PREFX": "typo", "BRIDGE_RECORD_MODE": "binary", "KAFKA_OTHER": "x"}
    assert main(["check-config"], env=env) == 0
    out, err = capsys.readouterr()
    assert err == "altinn-bridge: warning: unknown BRIDGE_* variables ignored (typo?): BRIDGE_TOPIC_PREFX\n"
    assert orjson.loads(out)["BRIDGE_RECORD_MODE"] == "binary"  # stdout stays the JSON


def test_check_config_says_nothing_on_stderr_when_every_variable_is_known(capsys):
    assert main(["check-config"], env={**BASE, "BRIDGE_RECORD_CE_HEADERS": "on"}) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert orjson.loads(out)["BRIDGE_RECORD_CE_HEADERS"] is True
