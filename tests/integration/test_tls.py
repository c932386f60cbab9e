"""TLS for real: the bridge serving HTTPS, and the bridge talking TLS (with and without a
client certificate, with hostname checking) to a broker. Certificates are made by the
test with trustme.

The pinned Tansu cannot serve TLS itself (its --cert and --key flags are declared
mutually exclusive), so a TLS-terminating proxy (devtools/tls_proxy.py) sits in front
of a plaintext Tansu that advertises the proxy's port: the bridge's TLS handshake,
certificate verification and client certificate are all real.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
import trustme

from devtools.broker import Broker, free_port, provision, start_broker
from devtools.tls_proxy import TlsProxy
from tests.support.events import ALTINN_CONTENT_TYPE, VALID
from tests.support.kafka import records_with_ce_id
from tests.support.logs import LOG_DIR
from tests.support.settings import make_settings
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.integration

TOKEN = "tls-test-token-" + "k" * 20
TEMPLATE = orjson.loads(VALID[5].read_bytes())  # correspondencepublished


@dataclass
class Pki:
    ca: trustme.CA
    directory: Path

    def server(self, *names: str) -> tuple[Path, Path]:
        """Certificate and key files for a server known by ``names``."""
        cert = self.ca.issue_cert(*names)
        stem = "-".join(names).replace(":", "_")
        cert_path, key_path = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        cert.cert_chain_pems[0].write_to_path(cert_path)
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(cert_path, append=True)
        cert.private_key_pem.write_to_path(key_path)
        return cert_path, key_path

    @property
    def ca_file(self) -> Path:
        path = self.directory / "ca.pem"
        if not path.exists():
            self.ca.cert_pem.write_to_path(path)
        return path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(trustme.CA(), tmp_path)


@dataclass
class TlsBroker:
    broker: Broker
    proxy: TlsProxy

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"


def _tls_broker(pki: Pki, *, server_names: tuple[str, ...], require_client_cert: bool) -> Iterator[TlsBroker]:
    proxy_port = free_port()
    broker = start_broker(LOG_DIR, advertised_port=proxy_port)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert, key = pki.server(*server_names)
    context.load_cert_chain(cert, key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca_file)
    proxy = TlsProxy(context, broker.port, proxy_port)
    proxy.start()
    try:
        # The broker's metadata points every client at the proxy: topics are made through it too.
        env = {
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CA_FILE": str(pki.ca_file),
            # Provisioning must work even where the certificate's name is wrong on purpose.
            "KAFKA_SSL_CHECK_HOSTNAME": "false",
        }
        if require_client_cert:
            cert, key = pki.server("provisioning-client")
            env.update(KAFKA_SSL_CERT_FILE=str(cert), KAFKA_SSL_KEY_FILE=str(key))
        settings = make_settings(BRIDGE_DEDUPE="kafka", **env)
        asyncio.run(provision(f"127.0.0.1:{proxy_port}", settings))
        yield TlsBroker(broker, proxy)
    finally:
        proxy.stop()
        broker.stop()


@pytest.fixture
def tls_broker(pki: Pki) -> Iterator[TlsBroker]:
    yield from _tls_broker(pki, server_names=("127.0.0.1",), require_client_cert=False)


@pytest.fixture
def mtls_broker(pki: Pki) -> Iterator[TlsBroker]:
    yield from _tls_broker(pki, server_names=("127.0.0.1",), require_client_cert=True)


@pytest.fixture
def misnamed_tls_broker(pki: Pki) -> Iterator[TlsBroker]:
    yield from _tls_broker(pki, server_names=("kafka.other.example",), require_client_cert=False)


async def _post_event(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object], str]:
    event = {**TEMPLATE, "id": str(uuid.uuid4())}
    headers = {"Content-Type": ALTINN_CONTENT_TYPE}
    async with http.post(url, data=orjson.dumps(event), headers=headers) as response:
        return response.status, orjson.loads(await response.read()), str(event["id"])


def _landed(bootstrap: str, event_id: str, **tls: str) -> bool:
    """Read back with confluent-kafka (over TLS when ``tls`` has librdkafka's ssl.* settings)."""
    return bool(
        records_with_ce_id(bootstrap, ["altinn.correspondence.correspondencepublished"], event_id, extra=tls)
    )


async def test_bridge_publishes_over_tls_with_hostname_checking(tls_broker, pki, start_bridge, http):
    bridge = start_bridge(
        tls_broker.bootstrap,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CA_FILE=str(pki.ca_file),
    )
    await wait_for_status(http, bridge.url + "/readyz", 200, timeout_s=30)

    status, answer, event_id = await _post_event(http, bridge.url + "/api/v1/events")

    assert (status, answer["outcome"]) == (200, "published")
    assert _landed(
        tls_broker.bootstrap, event_id, **{"security.protocol": "ssl", "ssl.ca.location": str(pki.ca_file)}
    )
    assert bridge.terminate() == 0


async def test_wrong_broker_certificate_name_keeps_the_bridge_unready(
    misnamed_tls_broker, pki, start_bridge, http
):
    bridge = start_bridge(
        misnamed_tls_broker.bootstrap,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CA_FILE=str(pki.ca_file),
        BRIDGE_PUBLISH_TIMEOUT_S="2",
    )
    await wait_for_status(http, bridge.url + "/healthz", 200)
    await asyncio.sleep(3)
    async with http.get(bridge.url + "/readyz") as response:
        assert response.status == 503
    status, answer, _ = await _post_event(http, bridge.url + "/api/v1/events")
    assert status == 503, answer
    assert bridge.terminate() == 0
    assert "CERTIFICATE_VERIFY_FAILED" in bridge.log() or "certificate verify failed" in bridge.log()


async def test_client_certificate_is_presented_when_the_broker_requires_one(
    mtls_broker, pki, start_bridge, http
):
    client_cert, client_key = pki.server("altinn-bridge-client")
    bridge = start_bridge(
        mtls_broker.bootstrap,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CA_FILE=str(pki.ca_file),
        KAFKA_SSL_CERT_FILE=str(client_cert),
        KAFKA_SSL_KEY_FILE=str(client_key),
    )
    await wait_for_status(http, bridge.url + "/readyz", 200, timeout_s=30)

    status, answer, event_id = await _post_event(http, bridge.url + "/api/v1/events")

    assert (status, answer["outcome"]) == (200, "published")
    reader_cert, reader_key = pki.server("reader-client")
    tls = {
        "security.protocol": "ssl",
        "ssl.ca.location": str(pki.ca_file),
        "ssl.certificate.location": str(reader_cert),
        "ssl.key.location": str(reader_key),
    }
    assert _landed(mtls_broker.bootstrap, event_id, **tls)
    assert bridge.terminate() == 0


async def test_without_client_certificate_the_mtls_broker_is_not_reached(
    mtls_broker, pki, start_bridge, http
):
    bridge = start_bridge(
        mtls_broker.bootstrap,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CA_FILE=str(pki.ca_file),
    )
    await wait_for_status(http, bridge.url + "/healthz", 200)
    await asyncio.sleep(3)
    async with http.get(bridge.url + "/readyz") as response:
        assert response.status == 503
    assert bridge.terminate() == 0


async def test_bridge_serves_https_and_checks_tokens(kafka_bootstrap, pki, start_bridge):
    cert, key = pki.server("127.0.0.1")
    bridge = start_bridge(
        kafka_bootstrap,
        BRIDGE_TLS_CERT_FILE=str(cert),
        BRIDGE_TLS_KEY_FILE=str(key),
        BRIDGE_AUTH="token",
        BRIDGE_AUTH_TOKENS=TOKEN,
    )
    https = bridge.url.replace("http://", "https://")
    client_context = ssl.create_default_context(cafile=str(pki.ca_file))
    connector = aiohttp.TCPConnector(ssl=client_context)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await wait_for_status(session, https + "/readyz", 200, timeout_s=30)

        status, answer, event_id = await _post_event(session, f"{https}/api/v1/events/{TOKEN}")
        assert (status, answer["outcome"]) == (200, "published")
        status, answer, _ = await _post_event(session, https + "/api/v1/events")
        assert status == 401, answer

    # Plain HTTP on the TLS port gets no answer from the bridge.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as plain:
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(bridge.url + "/healthz") as response:
                await response.read()
    assert bridge.terminate() == 0
    assert '"listening":"https://' in bridge.log()
    assert TOKEN not in bridge.log()
    assert _landed(kafka_bootstrap, event_id)
