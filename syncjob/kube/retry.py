"""The one retry policy, as pure functions; `client.py` wires it to tenacity."""

from __future__ import annotations

import random
from collections.abc import Mapping

import urllib3
from kubernetes.client.exceptions import ApiException

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 6
BASE_DELAY = 0.2  # seconds; doubles per attempt
MAX_DELAY = 10.0  # cap for one wait, also for a server's Retry-After


def is_transient(exc: BaseException) -> bool:
    """Worth another try: throttling, server trouble, or a connection that failed mid-way."""
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUSES
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False  # a certificate problem does not heal by retrying
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After, in seconds form), if any."""
    headers: Mapping[str, str] | None = getattr(exc, "headers", None)
    if not isinstance(exc, ApiException) or not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # the HTTP-date form; the API server never sends it


def backoff(attempt: int, exc: BaseException, rng: random.Random | None = None) -> float:
    """Wait before retry number `attempt` (1-based): Retry-After if given, else capped full jitter."""
    asked = retry_after(exc)
    if asked is not None:
        return min(asked, MAX_DELAY)
    ceiling = min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)
