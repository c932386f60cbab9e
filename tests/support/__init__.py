"""What the test folders share, each concern in one module.

Fixtures are registered once, by ``pytest_plugins`` in tests/conftest.py; helpers are
imported from here (``from tests.support.http import json_answer``), never from another
folder's conftest.

- ``events``: the Altinn event files in tests/fixtures and what the docs say about them
  (type names, metric labels, default topics, the record contract).
- ``settings``: settings from a dict, pointed at a broker that is never contacted.
- ``fakes``: the fake :class:`bridge.publisher.Publisher`, configurable per test.
- ``http``: requests as Altinn sends them and checks of the answers (JSON, problem+json).
- ``metrics``: reading an in-process registry.
- ``waiting``: waiting for state (``until``) or for a URL's status, never for a duration.
- ``logs``: the suite's log directory and the scan for national identity numbers in it.
- ``broker``: the Tansu broker (devtools/broker.py) as fixtures; no broker starts unless a
  test asks for one.
- ``bridge_process``: ``python -m bridge serve`` in a subprocess.
- ``kafka``: reading records back with confluent-kafka, an independent client.
- ``altinn``: the fake Maskinporten + Altinn (devtools/fake_altinn.py) as fixtures.
- ``markers``: the collection rules: a marked folder's modules carry its marker, and only
  marked tests start a broker or a bridge process.
"""
