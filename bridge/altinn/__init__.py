"""Altinn's own APIs, for tooling: Maskinporten, the token exchange, and Events.

``settings`` (the environment), ``maskinporten`` (the JWT-bearer grant), ``tokens``
(exchange for an Altinn token, cached), ``events_api`` (subscriptions and the pull
API), ``subscriptions`` (the rules a subscription request must follow) and
``commands`` (``altinn-bridge subscription …``). The webhook server imports it only
with ``BRIDGE_RECONCILE=on``, for the pull API (:mod:`bridge.reconciler`).
"""
