"""Resilience primitives usable by any actor (or none): backoff schedules, and later breakers and limiters."""

from .backoff import exponential_backoff

__all__ = ["exponential_backoff"]
