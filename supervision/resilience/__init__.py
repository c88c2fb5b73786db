"""Resilience primitives usable by any actor (or none): backoff schedules, circuit breakers, rate limiters."""

from .backoff import exponential_backoff, health_backoff
from .breaker import BreakerChange, BreakerOpen, BreakerSnapshot, BreakerState, CircuitBreaker, Permit
from .rate_limiter import LimiterSnapshot, RateLimiter, Reservation

__all__ = ["exponential_backoff", "health_backoff", "CircuitBreaker", "BreakerState", "BreakerOpen", "BreakerChange",
           "Permit", "BreakerSnapshot", "RateLimiter", "Reservation", "LimiterSnapshot"]
