"""``altinn-bridge subscription …`` as a user runs it: exit codes, output, what reached the fake Altinn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.auth import fingerprint
from bridge.cli import main
from devtools.fake_altinn import FakeAltinn
from tests.altinn.conftest import BRIDGE_TOKEN, ENDPOINT, secrets_of
from tests.support.altinn import RESOURCE

ROOT = Path(__file__).parents[2]
PUBLISHED = "no.altinn.correspondence.correspondencepublished"
READ = "no.altinn.correspondence.correspondencereceiverread"


def run(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["subscription", *argv], env=env)
    out, err = capsys.readouterr()
    return code, out, err


def json_documents(text: str) -> list[dict[str, object]]:
    decoder, docs, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    while pos < len(text):
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs


def create(*extra: str) -> list[str]:
    return ["create", "--endpoint", ENDPOINT, "--resource", RESOURCE, *extra]


def test_one_subscription_per_type(
    env: dict[str, str], fake: FakeAltinn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(create("--type", "correspondencepublished", "--type", READ), env, capsys)
    assert code == 0, err
    assert [r.body for r in fake.received] == [
        {"endPoint": ENDPOINT, "resourceFilter": RESOURCE, "typeFilter": PUBLISHED},
        {"endPoint": ENDPOINT, "resourceFilter": RESOURCE, "typeFilter": READ},
    ]
    docs = json_documents(out)
    assert [d["typeFilter"] for d in docs] == [PUBLISHED, READ]
    assert all(d["validated"] is False for d in docs)
    assert f"subscription {docs[0]['id']} for {PUBLISHED}: validated: false" in err
    assert "validation event" in err
    assert "up to an hour" in err
    assert fake.maskinporten_tokens_issued == 1  # one cached token for both requests


def test_no_type_is_one_subscription_for_every_type(
    env: dict[str, str], fake: FakeAltinn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        create("--subject", "urn:altinn:organization:identifier-no:310654302", "--include-subunits"),
        env,
        capsys,
    )
    assert code == 0, err
    [received] = fake.received
    assert received.body == {
        "endPoint": ENDPOINT,
        "resourceFilter": RESOURCE,
        "subjectFilter": "urn:altinn:organization:identifier-no:310654302",
        "includeSubunits": True,
    }
    assert "for every event type: validated: false" in err


@pytest.mark.parametrize(
    ("option", "setting"),
    [
        ("--source-filter", "BRIDGE_FILTER_SOURCES"),
        ("--alternative-subject-filter", "BRIDGE_FILTER_ALTERNATIVESUBJECTS"),
    ],
)
def test_refused_filters_never_reach_altinn(
    env: dict[str, str], fake: FakeAltinn, capsys: pytest.CaptureFixture[str], option: str, setting: str
) -> None:
    code, out, err = run(create(option, "https://platform.tt02.altinn.no/correspondence"), env, capsys)
    assert code == 2
    assert out == ""
    assert "Altinn refuses" in err
    assert "HTTP 400" in err
    assert setting in err
    assert fake.received == []
    assert fake.maskinporten_tokens_issued == 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--endpoint", f"http://bridge.example.org/api/v1/events/{BRIDGE_TOKEN}"],
            "--endpoint must be https",
        ),
        (["--endpoint", f"/api/v1/events/{BRIDGE_TOKEN}"], "absolute https URL"),
        (["--resource", "altinn-correspondence-test-resource-1"], "urn:altinn:resource:"),
        (["--include-subunits"], "--include-subunits needs --subject"),
        (["--type", "correspondence*"], "exactly one type per subscription, no wildcards"),
        (["--type", f"{PUBLISHED},{READ}"], "exactly one type per subscription"),
    ],
)
def test_usage_errors_exit_2_and_send_nothing(
    env: dict[str, str], fake: FakeAltinn, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    base = {"--endpoint": ENDPOINT, "--resource": RESOURCE}
    options = [*argv]
    for name, value in base.items():
        if name not in argv:
            options += [name, value]
    code, out, err = run(["create", *options], env, capsys)
    assert code == 2
    assert expected in err
    assert out == ""
    assert fake.received == []
    assert BRIDGE_TOKEN not in err


def test_an_empty_subject_is_warned_about(
    env: dict[str, str], fake: FakeAltinn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(create("--subject", ""), env, capsys)
    assert code == 0
    assert 'warning: --subject ""' in err
    assert "matches nothing" in err
    assert fake.received[0].body["subjectFilter"] == ""


def test_dry_run_sends_nothing_and_needs_no_client(
    urls_env_only: dict[str, str], fake: FakeAltinn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        create("--type", "correspondencepublished", "--type", READ, "--dry-run"), urls_env_only, capsys
    )
    assert code == 0, err
    platform = urls_env_only["ALTINN_PLATFORM_URL"]
    blocks = out.split("\n\nPOST ")
    assert len(blocks) == 2
    assert out.startswith(f"POST {platform}/events/api/v1/subscriptions\n")
    assert "Authorization: Bearer <redacted" in out
    bodies = json_documents(out[out.index("{") : out.index("}") + 1])
    assert bodies == [
        {
            "endPoint": ENDPOINT.replace(BRIDGE_TOKEN, f"<token sha256:{fingerprint(BRIDGE_TOKEN)}>"),
            "resourceFilter": RESOURCE,
            "typeFilter": PUBLISHED,
        }
    ]
    assert "nothing sent and no token obtained" in err
    assert fake.received == []
    assert fake.maskinporten_tokens_issued == 0
    assert fake.assertions == []


@pytest.fixture
def urls_env_only(env: dict[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in env.items() if not k.startswith("MASKINPORTEN_") or k.endswith(("_URL", "_AUDIENCE"))
    }


def test_list_show_delete(env: dict[str, str], fake: FakeAltinn, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(create("--type", PUBLISHED, "--type", READ), env, capsys)[0] == 0
    first, second = sorted(fake.subscriptions)
    fake.mark_validated(first)

    code, out, err = run(["list"], env, capsys)
    assert code == 0
    [listing] = json_documents(out)
    assert listing["count"] == 2
    assert [s["id"] for s in listing["subscriptions"]] == [first, second]
    assert "2 subscription(s): 1 validated, 1 not validated" in err

    code, out, err = run(["show", str(first)], env, capsys)
    assert code == 0
    assert json_documents(out)[0]["validated"] is True
    assert f"subscription {first}: validated: true" in err

    code, out, err = run(["delete", str(second)], env, capsys)
    assert code == 0
    assert f"subscription {second} deleted" in err
    assert "up to an hour" in err
    assert list(fake.subscriptions) == [first]
    assert [(r.method, r.path) for r in fake.received][-1] == (
        "DELETE",
        f"/events/api/v1/subscriptions/{second}",
    )

    code, out, err = run(["show", str(second)], env, capsys)
    assert code == 1
    assert out == ""
    assert "Altinn answered HTTP 404" in err
    assert "Subscription not found" in err


def test_altinns_refusal_exits_1_with_its_reason(
    env: dict[str, str], fake: FakeAltinn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(create("--type", "correspondencearchived"), env, capsys)
    assert code == 1
    assert "not a type Correspondence is known to emit" in err  # warned first…
    assert "Altinn answered HTTP 400 to POST" in err  # …then Altinn's own answer
    assert "typeFilter must be exactly one known event type" in err
    assert out == ""
    assert [r.status for r in fake.received] == [400]  # a 400 is not retried
    assert fake.subscriptions == {}


def test_maskinporten_refusal_exits_1_with_its_description(
    env: dict[str, str], fake: FakeAltinn, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["list"], {**env, "MASKINPORTEN_KEY_ID": "retired-kid"}, capsys)
    assert code == 1
    assert "Maskinporten refused the token request (HTTP 400) invalid_grant" in err
    assert "Unknown alg/kid 'retired-kid'" in err
    assert out == ""
    assert fake.credentials_seen
    assert not [s for s in secrets_of(fake, key_file) if s in err]


def test_missing_client_is_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["list"], {}, capsys)
    assert code == 2
    assert out == ""
    for name in ("MASKINPORTEN_CLIENT_ID", "MASKINPORTEN_KEY_ID", "MASKINPORTEN_PRIVATE_KEY_FILE"):
        assert f"{name} is required" in err


def test_unreadable_key_is_a_configuration_error(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    code, _, err = run(["list"], {**env, "MASKINPORTEN_PRIVATE_KEY_FILE": str(bad)}, capsys)
    assert code == 2
    assert "MASKINPORTEN_PRIVATE_KEY_FILE" in err
    assert "not a PEM private key" in err


def test_no_secret_in_output_or_logs(
    env: dict[str, str],
    fake: FakeAltinn,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    outputs = [run(create("--type", PUBLISHED), env, capsys), run(["list"], env, capsys)]
    fake.fail_next(401, times=2)
    outputs.append(run(["show", "1"], env, capsys))
    assert [code for code, _, _ in outputs] == [0, 0, 1]
    secrets = secrets_of(fake, key_file)
    assert len(fake.credentials_seen) >= 9  # 4 runs' assertions and tokens were really made
    text = "".join(out + err for _, out, err in outputs) + caplog.text
    assert [s[:12] for s in secrets if s in text] == []
    assert f"<token sha256:{fingerprint(BRIDGE_TOKEN)}>" in text


def test_usage_without_action_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["subscription"], env={})
    assert raised.value.code == 2
    assert "create,list,show,delete" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["show", "delete"])
def test_a_subscription_id_is_a_number(
    env: dict[str, str], fake: FakeAltinn, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["subscription", action, "../events"], env=env)
    assert raised.value.code == 2
    assert "is not a subscription id" in capsys.readouterr().err
    assert fake.received == []


def test_server_commands_still_work_and_do_not_load_the_altinn_client() -> None:
    probe = (
        "import sys\n"
        "from bridge.cli import main\n"
        "code = main(['topics'], env={'KAFKA_BOOTSTRAP_SERVERS': '127.0.0.1:1', 'BRIDGE_AUTH': 'none'})\n"
        "print(code, 'bridge.altinn.commands' in sys.modules, 'jwt' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    lines = result.stdout.strip().splitlines()
    assert "altinn.correspondence.correspondencepublished" in lines
    assert lines[-1] == "0 False False"


def test_console_script_dry_run() -> None:
    script = Path(sys.executable).parent / "altinn-bridge"
    result = subprocess.run(
        [str(script), "subscription", "delete", "42", "--dry-run"],
        capture_output=True,
        text=True,
        env={"ALTINN_ENVIRONMENT": "production", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("DELETE https://platform.altinn.no/events/api/v1/subscriptions/42\n")
    assert "nothing sent and no token obtained" in result.stderr
