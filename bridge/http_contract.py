"""The HTTP contract in one place: paths, media types, problem types, the retry hint.

A leaf: it imports nothing of the bridge, so the handlers, the middleware, the
log masking and the tests all read the same names. The OpenAPI document
(``bridge/openapi.json``, served at ``/openapi.json``) states the same facts for
clients; tests tie the two.
"""

from __future__ import annotations

from typing import Final

#: Where events are posted. With token auth, also ``EVENTS_PATH + "/<token>"`` (Altinn cannot send headers).
EVENTS_PATH: Final = "/api/v1/events"
#: The route of a token in the path, as aiohttp matches it.
EVENTS_TOKEN_ROUTE: Final = EVENTS_PATH + "/{token}"
HEALTHZ_PATH: Final = "/healthz"
READYZ_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"
OPENAPI_PATH: Final = "/openapi.json"

#: The media type Altinn sends one structured-mode CloudEvent with.
ALTINN_MEDIA_TYPE: Final = "application/json"
#: The CloudEvents HTTP binding's structured-mode media type.
CLOUDEVENTS_MEDIA_TYPE: Final = "application/cloudevents+json"
#: Media types of one structured-mode CloudEvent.
STRUCTURED_TYPES: Final = frozenset({ALTINN_MEDIA_TYPE, CLOUDEVENTS_MEDIA_TYPE})
#: Media type of a JSON array of structured-mode CloudEvents.
BATCH_MEDIA_TYPE: Final = "application/cloudevents-batch+json"
#: A request carrying this header is in HTTP binary content mode (attributes in headers).
BINARY_MARKER: Final = "ce-specversion"
#: Binary mode's body when it is not JSON: the event's data, as bytes.
BINARY_DATA_MEDIA_TYPE: Final = "application/octet-stream"
#: Every JSON answer that is not a problem.
JSON_MEDIA_TYPE: Final = "application/json"

#: Error answers are RFC 9457 problem documents of this media type ...
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
#: ... whose ``type`` is this prefix followed by the problem's slug (``bridge.errors``).
PROBLEM_BASE: Final = "urn:altinn-kafka-bridge:problem:"

#: Seconds a sender is asked to wait (``Retry-After``) before retrying after Kafka trouble.
RETRY_AFTER_S: Final = 5
#: Seconds asked for when the bridge sheds load or is shutting down: another replica can take it at once.
RETRY_AFTER_OVERLOADED_S: Final = 1
