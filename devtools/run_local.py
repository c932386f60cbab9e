"""``make run``: a local broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the
topics, and the bridge on http://127.0.0.1:8080. Ctrl-C stops both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from bridge.config import ConfigError, Settings
from devtools.broker import Broker, kafka_answers, provision, start_broker

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "fixtures" / "altinn-events" / "valid" / "06-correspondencepublished.json"
LOCAL_PORT = 9092


def _local_broker(state_dir: Path) -> Broker:
    if kafka_answers("127.0.0.1", LOCAL_PORT):
        sys.exit(
            f"Something already answers Kafka on 127.0.0.1:{LOCAL_PORT}. Stop it, or use it with "
            f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{LOCAL_PORT} make run"
        )
    broker = start_broker(state_dir, port=LOCAL_PORT)
    print(f"local broker (Tansu, in memory) on {broker.bootstrap}; log: {broker.log_path}")
    return broker


def main() -> int:
    """Start everything, print how to use it, wait for Ctrl-C."""
    # SIGTERM (e.g. from `timeout` or a closing terminal) must still stop the broker,
    # which runs in its own session and would otherwise be left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state_dir = ROOT / ".local"
    state_dir.mkdir(exist_ok=True)
    env = dict(os.environ)
    broker: Broker | None = None
    if "KAFKA_BOOTSTRAP_SERVERS" not in env:
        broker = _local_broker(state_dir)
        env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        # Tansu cannot do the idempotent producer (docs/configuration.md); real Kafka keeps the default.
        env.setdefault("KAFKA_ENABLE_IDEMPOTENCE", "false")
    env.setdefault("BRIDGE_HTTP_HOST", "127.0.0.1")
    env.setdefault("BRIDGE_HTTP_PORT", "8080")
    env.setdefault("BRIDGE_SHUTDOWN_DRAIN_S", "0")
    # Local only: nothing but this machine can reach 127.0.0.1. Production needs tokens.
    if "BRIDGE_AUTH_TOKENS" not in env:
        env.setdefault("BRIDGE_AUTH", "none")
    bridge_cmd = [sys.executable, "-m", "bridge"]
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    bridge: subprocess.Popen[bytes] | None = None
    try:
        try:
            settings = Settings.from_env(env)
        except ConfigError as exc:
            sys.exit(f"altinn-bridge: {exc}")
        topics = asyncio.run(provision(bootstrap, settings))
        print(f"topics ready on {bootstrap}: {len(topics)}")
        bridge = subprocess.Popen([*bridge_cmd, "serve"], env=env)
        url = f"http://{env['BRIDGE_HTTP_HOST']}:{env['BRIDGE_HTTP_PORT']}"
        _wait_ready(url, bridge)
        _print_help(url, bootstrap)
        with contextlib.suppress(KeyboardInterrupt):
            bridge.wait()
    finally:
        if bridge is not None and bridge.poll() is None:
            bridge.send_signal(signal.SIGTERM)
            bridge.wait(30)
        if broker is not None:
            broker.stop()
            print("local broker stopped")
    return 0


def _wait_ready(url: str, bridge: subprocess.Popen[bytes]) -> None:
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if bridge.poll() is not None:
            sys.exit(f"the bridge exited with {bridge.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310 - local URL
                if response.status == 200:  # noqa: PLR2004
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    print("warning: the bridge did not report ready within 30 s; see its log above")


def _print_help(url: str, bootstrap: str) -> None:
    sample = shlex.quote(str(SAMPLE.relative_to(ROOT)))
    print(
        f"""
==> The bridge is ready: {url}
    Authentication is off here (BRIDGE_AUTH=none). In production set BRIDGE_AUTH_TOKENS and
    register https://<your-host>/api/v1/events/<token> in Altinn (see SECURITY.md).

    Post a sample event, as Altinn does:
      curl -i -X POST {url}/api/v1/events \\
        -H 'Content-Type: application/json; charset=utf-8' --data-binary @{sample}

    Show what landed on Kafka:
      .venv/bin/python -m devtools.show_topic --bootstrap {bootstrap} \\
        altinn.correspondence.correspondencepublished

    Metrics: {url}/metrics   Health: {url}/healthz   Ready: {url}/readyz
    Ctrl-C stops the bridge and the broker.
""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
