"""Domain errors, each knowing its HTTP status and whether a retry can help.

One middleware (:mod:`bridge.middleware`) turns them into RFC 9457
``application/problem+json`` answers; handlers never build error responses.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar


class BridgeError(Exception):
    """Base of every error answered to a client.

    ``slug`` becomes the problem ``type`` URI; ``outcome`` is the value of the
    events metric's ``outcome`` label; ``retry_after_s`` adds a Retry-After header;
    ``extra`` members (those not None) go into the problem body and the log line.
    """

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal-error"
    outcome: ClassVar[str] = "error"
    retryable: ClassVar[bool] = True
    #: Close the connection after answering (the rest of the body was not read).
    close_connection: ClassVar[bool] = False
    #: Extra response headers.
    headers: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, detail: str, *, retry_after_s: int | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.extra = {k: v for k, v in extra.items() if v is not None}


class UnsupportedMediaType(BridgeError):
    """The request's content type is not one the endpoint takes."""

    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"
    outcome = "rejected"
    retryable = False


class InvalidEventRejected(BridgeError):
    """An invalid event under the ``reject`` policy."""

    status = 400
    title = "Invalid event"
    slug = "invalid-event"
    outcome = "rejected"
    retryable = False


class KafkaUnavailable(BridgeError):
    """Kafka did not acknowledge in time or refused; the sender should retry.

    ``late`` is set when the record is still in the producer and may yet be
    acknowledged: it resolves to the record's ``Delivery`` or fails.
    """

    late: asyncio.Future[Any] | None = None
    status = 503
    title = "Kafka unavailable"
    slug = "kafka-unavailable"
    outcome = "unavailable"
    retryable = True


class ShuttingDown(BridgeError):
    """The bridge is draining before exit; the sender should retry (elsewhere)."""

    status = 503
    title = "Shutting down"
    slug = "shutting-down"
    outcome = "unavailable"
    retryable = True


class Unauthorized(BridgeError):
    """No token, or not one of the configured ones."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"
    outcome = "unauthorized"
    retryable = False
    headers = (("WWW-Authenticate", 'Bearer realm="altinn-kafka-bridge"'),)


class Forbidden(BridgeError):
    """The request's source address is not in the allowlist."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"
    outcome = "unauthorized"
    retryable = False


class Overloaded(BridgeError):
    """Too many publishes in flight; shed at once instead of queueing."""

    status = 503
    title = "Overloaded"
    slug = "overloaded"
    outcome = "overloaded"
    retryable = True


class DedupeNotReady(BridgeError):
    """The dedupe window is still loading; publishing now could duplicate."""

    status = 503
    title = "Not ready"
    slug = "not-ready"
    outcome = "unavailable"
    retryable = True


class PayloadTooLarge(BridgeError):
    """The body, or the batch, is larger than the configured limit."""

    status = 413
    title = "Payload too large"
    slug = "payload-too-large"
    outcome = "rejected"
    retryable = False
    close_connection = True


class RequestTimeout(BridgeError):
    """The client did not send its body within the read timeout."""

    status = 408
    title = "Request timeout"
    slug = "request-timeout"
    outcome = "rejected"
    retryable = True
    close_connection = True


class InvalidBatch(BridgeError):
    """A batch body that is not a JSON array; its events cannot be told apart."""

    status = 400
    title = "Invalid batch"
    slug = "invalid-batch"
    outcome = "rejected"
    retryable = False


class BatchIncomplete(BridgeError):
    """Some events of a batch were not accepted; resending the whole batch is safe."""

    status = 503
    title = "Batch incomplete"
    slug = "batch-incomplete"
    outcome = "unavailable"
    retryable = True


class BatchRejected(BridgeError):
    """Some events of a batch were rejected (``reject`` policy) and none is retryable."""

    status = 400
    title = "Batch rejected"
    slug = "batch-rejected"
    outcome = "rejected"
    retryable = False


class PublishError(Exception):
    """Raised by a :class:`~bridge.publisher.Publisher` when a record was not acknowledged.

    ``kind`` is a bounded label for the producer-errors metric (``timeout`` or
    the Kafka error class name).
    """

    def __init__(self, kind: str, detail: str, late: asyncio.Future[Any] | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        #: For a timeout: the record's outcome, still to come (see KafkaUnavailable).
        self.late = late
