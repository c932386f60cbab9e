"""Local fakes of Maskinporten, Altinn's token exchange and Altinn Events, as documented.

What they implement is what ``../shared/altinn-facts.md`` ("Subscription API",
"Pull API") says the real services do, so the tooling can be tested without
Altinn: the JWT-bearer grant with a checked RS256 assertion, the exchange (its
answer JSON-quoted or bare), subscriptions with Altinn's validation rules, and the
pull API's cursor. All state is in one :class:`FakeAltinn`, which tests configure
(clock, token lifetimes, injected failures), fill (events of a chosen age) and
inspect (what was received, how many tokens were issued).

Standalone, on one port (both apps' paths do not overlap)::

    python -m devtools.fake_altinn --port 8090 [--key-file key.pem] [--events DIR]

generates the client key if the file does not exist yet, and prints the
environment that points ``altinn-bridge subscription`` at it. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.events import CORRESPONDENCE_PREFIX, KNOWN_TYPES

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EVENTS_SCOPE = "altinn:events.subscribe"
#: Maskinporten refuses assertions living longer than this.
MAX_ASSERTION_LIFETIME_S = 120
#: Tolerated clock skew for an assertion's iat.
CLOCK_SKEW_S = 10
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
KNOWN_FULL_TYPES = frozenset(CORRESPONDENCE_PREFIX + t for t in KNOWN_TYPES)
_BODY = web.RequestKey("body", object)


@dataclass(frozen=True)
class Client:
    """A Maskinporten client as registered: id, key id, public key and the scopes it may ask for."""

    client_id: str
    key_id: str
    public_key: rsa.RSAPublicKey
    scopes: frozenset[str] = frozenset({EVENTS_SCOPE})


@dataclass
class Received:
    """One request the fake Events API got (Authorization left out), and what it answered."""

    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any
    headers: dict[str, str]
    status: int = 0


@dataclass
class _Failure:
    status: int
    retry_after: str | None


@dataclass
class _Stored:
    sequence: int
    registered: float
    event: dict[str, Any]


class _Refused(Exception):
    """Maskinporten's answer to a bad grant: an OAuth error code and its description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass
class FakeAltinn:
    """State and behaviour of the fakes (see the module docstring); tests set and read its attributes."""

    client: Client | None = None
    #: The ``aud`` assertions must carry; set to the Maskinporten fake's origin + "/" when it starts.
    audience: str = ""
    clock: Callable[[], float] = time.time
    maskinporten_expires_in_s: int = 120
    altinn_token_lifetime_s: int = 1800
    #: The exchange answers ``"<token>"`` (JSON-quoted) when true, the bare token when false.
    exchange_quoted: bool = True
    #: Events become visible to the pull API this long after they were registered.
    visibility_delay_s: float = 30.0

    maskinporten_tokens_issued: int = 0
    altinn_tokens_issued: int = 0
    #: Accepted assertions' header and claims, in order.
    assertions: list[dict[str, Any]] = field(default_factory=list)
    #: Every credential that passed through (assertions, tokens): output must never show one.
    credentials_seen: list[str] = field(default_factory=list)
    #: Requests to the Events API (subscriptions and pull), in order.
    received: list[Received] = field(default_factory=list)
    subscriptions: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Subscription id for every validation event Altinn would send (create and identical re-POST).
    validation_events: list[int] = field(default_factory=list)

    _failures: deque[_Failure] = field(default_factory=deque)
    _events: list[_Stored] = field(default_factory=list)
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _seen_jti: set[str] = field(default_factory=set)
    _valid_altinn_jti: set[str] = field(default_factory=set)
    _next_subscription: int = 1

    # --- test controls ------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` Events API requests with ``status`` (e.g. 429 with ``Retry-After``)."""
        self._failures.extend(_Failure(status, retry_after) for _ in range(times))

    def revoke_altinn_tokens(self) -> None:
        """Make every Altinn token issued so far invalid (as if it had expired at Altinn's end)."""
        self._valid_altinn_jti.clear()

    def mark_validated(self, subscription_id: int) -> None:
        """What happens when the endpoint answers the validation event 2xx."""
        self.subscriptions[subscription_id]["validated"] = True

    def add_event(self, event: dict[str, Any], *, age_s: float = 60.0) -> int:
        """Store ``event`` as registered ``age_s`` seconds ago; its sequence number."""
        sequence = len(self._events) + 1
        self._events.append(_Stored(sequence, self.clock() - age_s, dict(event)))
        return sequence

    def add_events(self, events: Iterable[dict[str, Any]], *, age_s: float = 60.0) -> None:
        """:meth:`add_event` for each, in order."""
        for event in events:
            self.add_event(event, age_s=age_s)

    # --- tokens -------------------------------------------------------------

    def _issue(self, kind: str, lifetime_s: int, claims: dict[str, Any]) -> tuple[str, str]:
        now = int(self.clock())
        jti = str(uuid.uuid4())
        token = jwt.encode(
            {**claims, "token_type": kind, "iat": now, "exp": now + lifetime_s, "jti": jti},
            self._secret,
            algorithm="HS256",
        )
        self.credentials_seen.append(token)
        return token, jti

    def _verify(self, authorization: str | None, kind: str) -> dict[str, Any] | None:
        """The claims of a valid bearer token of ``kind``, else ``None``."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
            )
        except jwt.PyJWTError:
            return None
        if claims.get("token_type") != kind or claims.get("exp", 0) <= self.clock():
            return None
        if kind == "altinn" and claims.get("jti") not in self._valid_altinn_jti:
            return None
        return claims

    # --- Maskinporten ---------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        """``POST /token``: the JWT-bearer grant."""
        form = await request.post()
        if form.get("grant_type") != GRANT_TYPE:
            return _oauth_error("unsupported_grant_type", "grant_type must be " + GRANT_TYPE)
        raw = form.get("assertion")
        if not isinstance(raw, str) or not raw:
            return _oauth_error("invalid_request", "assertion is missing")
        self.credentials_seen.append(raw)
        try:
            header, claims = self._check_assertion(raw)
        except _Refused as refused:
            return _oauth_error(refused.error, refused.description)
        self.assertions.append({"header": header, "claims": claims})
        token, _ = self._issue(
            "maskinporten",
            self.maskinporten_expires_in_s,
            {"iss": self.audience, "client_id": claims["iss"], "scope": claims["scope"]},
        )
        self.maskinporten_tokens_issued += 1
        return web.json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.maskinporten_expires_in_s,
                "scope": claims["scope"],
            }
        )

    def _check_assertion(self, raw: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The header and claims of a valid assertion; :class:`_Refused` with Maskinporten's error if not."""
        client = self.client
        if client is None:
            raise _Refused("invalid_client", "no client is registered with this fake")
        try:
            header = jwt.get_unverified_header(raw)
        except jwt.PyJWTError:
            raise _Refused("invalid_grant", "Invalid assertion. The assertion is not a JWT.") from None
        if header.get("alg") != "RS256" or header.get("kid") != client.key_id:
            raise _Refused("invalid_grant", f"Invalid assertion. Unknown alg/kid {header.get('kid')!r}.")
        try:
            claims: dict[str, Any] = jwt.decode(
                raw,
                client.public_key,
                algorithms=["RS256"],
                audience=self.audience,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                },
            )
        except jwt.InvalidAudienceError:
            raise _Refused("invalid_grant", f"Invalid assertion. aud must be {self.audience}") from None
        except jwt.InvalidSignatureError:
            raise _Refused(
                "invalid_grant", "Invalid assertion. Client authentication failed. Invalid signature."
            ) from None
        except jwt.PyJWTError as exc:
            raise _Refused("invalid_grant", f"Invalid assertion. {exc}") from None
        self._check_claims(client, claims)
        return header, claims

    def _check_claims(self, client: Client, claims: dict[str, Any]) -> None:
        now = self.clock()
        exp, iat = claims["exp"], claims["iat"]
        problem = None
        if claims["iss"] != client.client_id:
            problem = f"Invalid assertion. Unknown client {claims['iss']!r}."
        elif exp <= now:
            problem = "Invalid assertion. The assertion has expired."
        elif iat > now + CLOCK_SKEW_S:
            problem = "Invalid assertion. iat is in the future."
        elif exp - iat > MAX_ASSERTION_LIFETIME_S:
            problem = f"Invalid assertion. exp - iat must not exceed {MAX_ASSERTION_LIFETIME_S} seconds."
        elif claims["jti"] in self._seen_jti:
            problem = "Invalid assertion. jti has been used before."
        if problem is not None:
            raise _Refused("invalid_grant", problem)
        self._seen_jti.add(claims["jti"])
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes:
            raise _Refused("invalid_scope", "scope is missing")
        if not scopes <= client.scopes:
            raise _Refused(
                "invalid_scope", f"Scope(s) not allowed: {' '.join(sorted(scopes - client.scopes))}"
            )

    # --- Altinn: token exchange -----------------------------------------------

    async def exchange(self, request: web.Request) -> web.Response:
        """``GET /authentication/api/v1/exchange/maskinporten``: a Maskinporten token for an Altinn token."""
        claims = self._verify(request.headers.get("Authorization"), "maskinporten")
        if claims is None:
            return web.Response(status=401, text="Invalid or expired Maskinporten token")
        token, jti = self._issue(
            "altinn",
            self.altinn_token_lifetime_s,
            {"iss": "fake-altinn", "client_id": claims["client_id"], "scope": claims["scope"]},
        )
        self._valid_altinn_jti.add(jti)
        self.altinn_tokens_issued += 1
        if self.exchange_quoted:
            return web.Response(text=orjson.dumps(token).decode(), content_type="application/json")
        return web.Response(text=token, content_type="text/plain")

    # --- Altinn Events ------------------------------------------------------

    @web.middleware
    async def events_gate(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """Record the request, check the token, serve injected failures; then the handler."""
        if not request.path.startswith("/events/"):
            response: web.StreamResponse = await handler(request)
            return response
        text = await request.text()
        try:
            body = orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            body = text
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
        received = Received(request.method, request.path, list(request.query.items()), body, headers)
        self.received.append(received)
        request[_BODY] = body
        claims = self._verify(request.headers.get("Authorization"), "altinn")
        if claims is None:
            response = web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        elif EVENTS_SCOPE not in str(claims.get("scope", "")).split():
            response = _problem(403, "Forbidden", f"the token lacks the scope {EVENTS_SCOPE}")
        elif self._failures:
            failure = self._failures.popleft()
            response = web.Response(
                status=failure.status,
                headers={"Retry-After": failure.retry_after} if failure.retry_after else None,
                text="injected failure",
            )
        else:
            response = await handler(request)
        received.status = response.status
        return response

    async def create_subscription(self, request: web.Request) -> web.Response:
        """``POST /events/api/v1/subscriptions`` with Altinn's rules for Correspondence resources."""
        body = request[_BODY]
        if not isinstance(body, dict):
            return _problem(400, "Bad Request", "the body must be a JSON object")
        problem = _subscription_problem(body)
        if problem is not None:
            return _problem(400, "Bad Request", problem)
        wanted = {
            "endPoint": body["endPoint"],
            "resourceFilter": body["resourceFilter"],
            "subjectFilter": body.get("subjectFilter"),
            "typeFilter": body.get("typeFilter"),
            "includeSubunits": bool(body.get("includeSubunits", False)),
        }
        for existing in self.subscriptions.values():
            if all(existing[k] == v for k, v in wanted.items()):
                self.validation_events.append(existing["id"])
                return web.json_response(existing, status=201)
        subscription = {
            "id": self._next_subscription,
            **wanted,
            "sourceFilter": None,
            "alternativeSubjectFilter": None,
            "consumer": "/org/fake",
            "createdBy": "/org/fake",
            "created": datetime.fromtimestamp(self.clock(), UTC).isoformat().replace("+00:00", "Z"),
            "validated": False,
        }
        self._next_subscription += 1
        self.subscriptions[subscription["id"]] = subscription
        self.validation_events.append(subscription["id"])
        return web.json_response(subscription, status=201)

    async def list_subscriptions(self, _: web.Request) -> web.Response:
        """``GET /events/api/v1/subscriptions``, unvalidated ones included."""
        items = list(self.subscriptions.values())
        return web.json_response({"count": len(items), "subscriptions": items})

    def _subscription(self, request: web.Request) -> dict[str, Any] | None:
        raw = request.match_info["id"]
        return self.subscriptions.get(int(raw)) if raw.isdigit() else None

    async def get_subscription(self, request: web.Request) -> web.Response:
        """``GET /events/api/v1/subscriptions/{id}``."""
        subscription = self._subscription(request)
        if subscription is None:
            return _problem(404, "Not Found", "Subscription not found")
        return web.json_response(subscription)

    async def delete_subscription(self, request: web.Request) -> web.Response:
        """``DELETE /events/api/v1/subscriptions/{id}`` (Altinn keeps pushing for up to an hour)."""
        subscription = self._subscription(request)
        if subscription is None:
            return _problem(404, "Not Found", "Subscription not found")
        del self.subscriptions[subscription["id"]]
        return web.Response(status=200)

    async def pull(self, request: web.Request) -> web.Response:
        """``GET /events/api/v1/events``: the page after ``after``, with ``next`` when not empty."""
        query = request.query
        resource, after = query.get("resource"), query.get("after")
        if not resource:
            return _problem(400, "Bad Request", "The 'resource' parameter must be defined.")
        if after is None or after == "":
            return _problem(400, "Bad Request", "The 'after' parameter must be defined.")
        try:
            size = int(query.get("size", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            return _problem(400, "Bad Request", "size must be a number")
        size = DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)
        # An id the store does not know silently restarts from the oldest event.
        start = next((s.sequence for s in self._events if str(s.event.get("id")) == after), 0)
        subject, types = query.get("subject"), query.getall("type", [])
        alternative_subject = request.headers.get("Altinn-AlternativeSubject")
        visible_until = self.clock() - self.visibility_delay_s
        page = [
            s.event
            for s in self._events
            if s.sequence > start
            and s.registered <= visible_until
            and s.event.get("resource") == resource
            and (subject is None or s.event.get("subject") == subject)
            and (not types or s.event.get("type") in types)
            and (alternative_subject is None or s.event.get("alternativesubject") == alternative_subject)
        ][:size]
        headers = {}
        if page:
            pairs = [(k, str(page[-1]["id"]) if k == "after" else v) for k, v in query.items()]
            headers["next"] = str(request.url.with_query(pairs))
        return web.Response(
            body=orjson.dumps(page), headers=headers, content_type="application/cloudevents+json"
        )


def _subscription_problem(body: dict[str, Any]) -> str | None:
    """What Altinn objects to in a subscription request for a Correspondence resource, if anything."""
    for refused in ("sourceFilter", "alternativeSubjectFilter"):
        if body.get(refused) is not None:
            return f"{refused} is not supported for subscriptions on Correspondence resources."
    endpoint = body.get("endPoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        return "Missing or invalid endpoint to push events towards (an absolute https URL)."
    resource = body.get("resourceFilter")
    if not isinstance(resource, str) or not resource.startswith("urn:altinn:resource:"):
        return "A valid resource filter (urn:altinn:resource:<id>) is required."
    type_filter = body.get("typeFilter")
    if type_filter is not None and (not isinstance(type_filter, str) or type_filter not in KNOWN_FULL_TYPES):
        return "typeFilter must be exactly one known event type, without wildcards."
    if body.get("includeSubunits") and body.get("subjectFilter") is None:
        return "includeSubunits requires a subjectFilter."
    return None


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)


def _problem(status: int, title: str, detail: str) -> web.Response:
    return web.Response(
        body=orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}),
        status=status,
        content_type="application/problem+json",
    )


# --- apps and servers ---------------------------------------------------------


def maskinporten_app(fake: FakeAltinn) -> web.Application:
    """Maskinporten's token endpoint, ``POST /token``."""
    app = web.Application()
    app.router.add_post("/token", fake.token)
    return app


def platform_app(fake: FakeAltinn) -> web.Application:
    """Altinn's platform: the token exchange and the Events API."""
    app = web.Application(middlewares=[fake.events_gate])
    _add_platform_routes(app, fake)
    return app


def combined_app(fake: FakeAltinn) -> web.Application:
    """Both on one server (standalone use): their paths do not overlap."""
    app = platform_app(fake)
    app.router.add_post("/token", fake.token)
    return app


def _add_platform_routes(app: web.Application, fake: FakeAltinn) -> None:
    app.router.add_get("/authentication/api/v1/exchange/maskinporten", fake.exchange)
    app.router.add_post("/events/api/v1/subscriptions", fake.create_subscription)
    app.router.add_get("/events/api/v1/subscriptions", fake.list_subscriptions)
    app.router.add_get("/events/api/v1/subscriptions/{id}", fake.get_subscription)
    app.router.add_delete("/events/api/v1/subscriptions/{id}", fake.delete_subscription)
    app.router.add_get("/events/api/v1/events", fake.pull)


@dataclass(frozen=True)
class Urls:
    """Where the running fakes answer, as the ``MASKINPORTEN_*``/``ALTINN_*`` variables want them."""

    token_url: str
    audience: str
    platform_url: str

    def env(self) -> dict[str, str]:
        """The override variables pointing the tooling at these fakes."""
        return {
            "MASKINPORTEN_TOKEN_URL": self.token_url,
            "MASKINPORTEN_AUDIENCE": self.audience,
            "ALTINN_PLATFORM_URL": self.platform_url,
        }


async def _start(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


@contextmanager
def running(fake: FakeAltinn) -> Iterator[Urls]:
    """Both fakes on 127.0.0.1 ephemeral ports, served from a thread, for the duration of the block.

    A thread of their own, so that synchronous code (the CLI's ``main``, which runs
    its own event loop) can call them as well as async tests can.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runners: list[web.AppRunner] = []
    ports: list[int] = []

    async def start() -> None:
        for app in (maskinporten_app(fake), platform_app(fake)):
            runner, port = await _start(app)
            runners.append(runner)
            ports.append(port)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="fake-altinn", daemon=True)
    thread.start()
    if not ready.wait(10):
        msg = "the fake Altinn did not start"
        raise RuntimeError(msg)
    mp, platform = ports
    fake.audience = f"http://127.0.0.1:{mp}/"
    try:
        yield Urls(f"http://127.0.0.1:{mp}/token", fake.audience, f"http://127.0.0.1:{platform}")
    finally:

        async def stop() -> None:
            for runner in reversed(runners):
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --- standalone -------------------------------------------------------------


def generate_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key, as Maskinporten clients use."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> bytes:
    """``key`` as an unencrypted PKCS#8 PEM, as MASKINPORTEN_PRIVATE_KEY_FILE wants it."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SystemExit(f"{path}: not an RSA private key")
        return key
    key = generate_key()
    path.touch(mode=0o600)
    path.write_bytes(pem(key))
    return key


def main(argv: list[str] | None = None) -> None:
    """``python -m devtools.fake_altinn --port N``: both fakes on one port of 127.0.0.1."""
    parser = argparse.ArgumentParser(prog="python -m devtools.fake_altinn", description=__doc__)
    parser.add_argument("--port", type=int, default=8090)
    # Outside the repository by default, so a generated key is never committed by accident.
    parser.add_argument(
        "--key-file", type=Path, default=Path(tempfile.gettempdir()) / "fake-maskinporten-key.pem"
    )
    parser.add_argument("--client-id", default="fake-client")
    parser.add_argument("--key-id", default="fake-key")
    parser.add_argument(
        "--events", type=Path, help="directory of event JSON files to serve from the pull API"
    )
    parser.add_argument(
        "--event-age", type=float, default=60.0, help="their age, in seconds (30 s to be visible)"
    )
    args = parser.parse_args(argv)

    key = _load_or_create_key(args.key_file)
    origin = f"http://127.0.0.1:{args.port}"
    fake = FakeAltinn(client=Client(args.client_id, args.key_id, key.public_key()), audience=origin + "/")
    if args.events is not None:
        for path in sorted(args.events.glob("*.json")):
            event = orjson.loads(path.read_bytes())
            if isinstance(event, dict) and "resource" in event:
                fake.add_event(event, age_s=args.event_age)
    urls = Urls(origin + "/token", origin + "/", origin)
    print("# fake Maskinporten and Altinn; point altinn-bridge subscription at them with:")
    env = {
        "MASKINPORTEN_CLIENT_ID": args.client_id,
        "MASKINPORTEN_KEY_ID": args.key_id,
        "MASKINPORTEN_PRIVATE_KEY_FILE": str(args.key_file.resolve()),
        **urls.env(),
    }
    for name, value in env.items():
        print(f"export {name}={value}", flush=True)
    web.run_app(combined_app(fake), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
