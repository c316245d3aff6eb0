"""Webhook events: recorded, signed and delivered from a background thread, with retries.

Events are delivered one after another in the order they were emitted (the copies of one
event, when duplicates are asked for, go out concurrently). A failed attempt (non-2xx,
connection error, timeout) is retried with exponential backoff without holding up the
events behind it, so after a failure the order is no longer guaranteed — as with Razorpay.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from typing import Any

from sandbox.config import SandboxConfig
from sandbox.ids import hmac_hex, new_id, now

log = logging.getLogger("sandbox.webhooks")

MODES = ("normal", "drop", "hold")


@dataclass(frozen=True)
class WebhookKnobs:
    url: str
    secret: str
    mode: str = "normal"
    duplicates: int = 1  # copies of every event, all with the same event id
    attempts: int = 6
    first_delay_s: float = 0.2
    timeout_s: float = 5.0

    def describe(self) -> dict[str, Any]:
        """The knobs without the secret."""
        return {"webhook_url": self.url, "webhook_mode": self.mode, "webhook_duplicates": self.duplicates,
                "webhook_attempts": self.attempts, "webhook_first_delay_s": self.first_delay_s,
                "webhook_timeout_s": self.timeout_s}


@dataclass
class Delivery:
    """One copy of an event on its way to the webhook URL."""

    copy: int
    state: str = "pending"  # pending | delivered | failed (gave up) | held | dropped
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None
    delivered_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"copy": self.copy, "state": self.state, "attempts": self.attempts, "last_status": self.last_status,
                "last_error": self.last_error, "last_attempt_at": self.last_attempt_at,
                "delivered_at": self.delivered_at}


@dataclass
class Event:
    id: str
    name: str
    body: bytes
    created_at: int
    entity_ids: dict[str, str]
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def state(self) -> str:
        states = {d.state for d in self.deliveries}
        for state in ("held", "dropped", "pending", "failed"):
            if state in states:
                return state
        return "delivered"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.name, "created_at": self.created_at, "state": self.state,
                **{f"{k}_id": v for k, v in self.entity_ids.items()},
                "body": json.loads(self.body), "deliveries": [d.as_json() for d in self.deliveries]}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a redirect is a failed delivery
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str | None]:
    """(HTTP status, None) when the receiver answered, (None, why) when it did not."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as resp:
            resp.read()
            return resp.status, None
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"


class Dispatcher:
    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._lock = threading.Condition()
        self._knobs = self._default_knobs()
        self._events: dict[str, Event] = {}
        self._held: list[str] = []
        self._queue: list[tuple[float, int, str, int]] = []  # (due, seq, event id, copy)
        self._seq = 0
        self._counts = {"sent": 0, "delivered": 0, "failed_attempts": 0, "given_up": 0, "dropped": 0}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
        self._thread.start()

    # -- knobs -------------------------------------------------------------------------------

    def _default_knobs(self) -> WebhookKnobs:
        c = self._config
        return WebhookKnobs(url=c.webhook_url, secret=c.webhook_secret, attempts=c.webhook_attempts,
                            first_delay_s=c.webhook_first_delay_s, timeout_s=c.webhook_timeout_s)

    def knobs(self) -> WebhookKnobs:
        with self._lock:
            return self._knobs

    def configure(self, **changes: Any) -> WebhookKnobs:
        with self._lock:
            self._knobs = replace(self._knobs, **changes)
            return self._knobs

    def reset(self) -> None:
        with self._lock:
            self._knobs = self._default_knobs()

    # -- events ------------------------------------------------------------------------------

    def emit(self, name: str, entities: dict[str, dict[str, Any]]) -> Event:
        """Record an event (Razorpay's shape) and queue, hold or drop it as the mode says."""
        body = {"entity": "event", "account_id": self._config.account_id, "event": name,
                "contains": list(entities), "payload": {k: {"entity": v} for k, v in entities.items()},
                "created_at": now()}
        raw = json.dumps(body, separators=(",", ":")).encode()
        with self._lock:
            knobs = self._knobs
            event = Event(new_id("evt"), name, raw, body["created_at"], {k: v["id"] for k, v in entities.items()})
            initial = {"normal": "pending", "hold": "held", "drop": "dropped"}[knobs.mode]
            event.deliveries = [Delivery(copy=i, state=initial) for i in range(knobs.duplicates)]
            self._events[event.id] = event
            if knobs.mode == "normal":
                self._enqueue(event, time.monotonic())
            elif knobs.mode == "hold":
                self._held.append(event.id)
            else:
                self._counts["dropped"] += 1
        log.info("event %s %s (%s)", event.id, name, knobs.mode)
        return event

    def _enqueue(self, event: Event, due: float) -> None:
        for delivery in event.deliveries:
            delivery.state = "pending"
            self._seq += 1
            heapq.heappush(self._queue, (due, self._seq, event.id, delivery.copy))
        self._lock.notify_all()

    def flush(self, order: str = "fifo") -> list[str]:
        """Send the held events, oldest first ("fifo") or newest first ("reverse")."""
        with self._lock:
            held, self._held = self._held, []
            if order == "reverse":
                held.reverse()
            due = time.monotonic()
            for event_id in held:
                self._enqueue(self._events[event_id], due)
            return held

    def events(self, name: str | None = None, entity_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e.as_json() for e in self._events.values()
                    if (name is None or e.name == name) and (entity_id is None or entity_id in e.entity_ids.values())]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "held": len(self._held), "events": len(self._events),
                    "pending": len(self._queue)}

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join(timeout)

    # -- delivery ----------------------------------------------------------------------------

    def _next_batch(self) -> list[tuple[Event, Delivery]] | None:
        """Wait for the next due delivery; return it with the due copies of the same event."""
        with self._lock:
            while not self._stopping:
                if self._queue:
                    wait = self._queue[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._lock.wait(wait)
                else:
                    self._lock.wait()
            if self._stopping:
                return None
            _, _, event_id, copy = heapq.heappop(self._queue)
            event = self._events[event_id]
            batch = [(event, event.deliveries[copy])]
            current = time.monotonic()
            while self._queue and self._queue[0][2] == event_id and self._queue[0][0] <= current:
                _, _, _, copy = heapq.heappop(self._queue)
                batch.append((event, event.deliveries[copy]))
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if len(batch) == 1:
                self._attempt(*batch[0])
                continue
            threads = [threading.Thread(target=self._attempt, args=item, daemon=True) for item in batch]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

    def _attempt(self, event: Event, delivery: Delivery) -> None:
        knobs = self.knobs()
        headers = {"Content-Type": "application/json", "User-Agent": "Razorpay-Webhook/v1",
                   "X-Razorpay-Signature": hmac_hex(knobs.secret, event.body), "X-Razorpay-Event-Id": event.id}
        status, error = _post(knobs.url, event.body, headers, knobs.timeout_s)
        ok = status is not None and 200 <= status < 300
        with self._lock:
            delivery.attempts += 1
            delivery.last_status, delivery.last_error = status, error
            delivery.last_attempt_at = time.time()
            self._counts["sent"] += 1
            if ok:
                delivery.state = "delivered"
                delivery.delivered_at = delivery.last_attempt_at
                self._counts["delivered"] += 1
            else:
                self._counts["failed_attempts"] += 1
                if delivery.attempts < knobs.attempts:
                    due = time.monotonic() + knobs.first_delay_s * 2 ** (delivery.attempts - 1)
                    self._seq += 1
                    heapq.heappush(self._queue, (due, self._seq, event.id, delivery.copy))
                    self._lock.notify_all()
                else:
                    delivery.state = "failed"
                    self._counts["given_up"] += 1
        log.info("event %s %s copy %d attempt %d: %s", event.id, event.name, delivery.copy, delivery.attempts,
                 status if status is not None else error)
