"""Lifecycle events: every step is a structlog event in the actor that takes it, and is delivered
to the runtime's subscribers (the dashboard, tests, the tour) through an in-process bus."""

from __future__ import annotations

import threading
from typing import Callable

import structlog

from .messages import LifecycleEvent

Subscriber = Callable[[LifecycleEvent], None]
log = structlog.get_logger("supervision")


class EventBus:
    """Fan-out of events to callbacks. A failing callback is logged and unsubscribed, never hidden."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def __bool__(self) -> bool:
        return bool(self._subscribers)

    def publish(self, event: LifecycleEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception as exc:  # noqa: BLE001 - a subscriber bug must not break the runtime
                log.error("subscriber_failed", subscriber=repr(callback), error=repr(exc))
                with self._lock:
                    if callback in self._subscribers:
                        self._subscribers.remove(callback)
