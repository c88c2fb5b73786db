"""Logging set-up for dspex programs: structlog with a level filter and secret redaction.

Redaction works on every event, whoever logs it: values under secret-looking keys (``api_key``,
``authorization``, ...) are replaced, and strings that look like provider keys (``sk-...``,
``AIza...``) are masked, so a key passed by mistake to a log call still never reaches the output;
so is every key this process knows (:mod:`dspex.scrub`), whatever its shape.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from .scrub import known_keys, scrub_text

SECRET_KEYS = re.compile(r"(api[_-]?key|authorization|secret|token$|password|x-goog-api-key)", re.I)
KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6,}|sk_[A-Za-z0-9_\-]{6,}|AIza[0-9A-Za-z_\-]{10,}|"
                         r"Bearer\s+[A-Za-z0-9._\-]{6,})")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
          "critical": logging.CRITICAL}


def scrub(value: Any, keys: frozenset[str] | None = None) -> Any:
    """Mask key-shaped substrings and the known keys in strings (recursively in dicts, lists and tuples)."""
    keys = known_keys() if keys is None else keys
    if isinstance(value, str):
        return scrub_text(KEY_PATTERN.sub("***", value), keys)
    if isinstance(value, dict):
        return {k: "***" if isinstance(k, str) and SECRET_KEYS.search(k) else scrub(v, keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v, keys) for v in value)
    return value


def redact(_logger: Any, _name: str, event: dict) -> dict:
    """structlog processor: no secret leaves through a log event."""
    return scrub(event)


def redact_rendered(_logger: Any, _name: str, line: str) -> str:
    """structlog's last step, after the renderer: a known key inside a value rendered by its ``repr``
    (an exception's or an object's) is masked in the line itself."""
    return scrub_text(line) if isinstance(line, str) else line


def configure_logging(level: str = "warning") -> None:
    """Route structlog events at ``level`` and above to stderr, redacted, without touching the stdlib root logger."""
    if level not in LEVELS:
        from .errors import ConfigError

        raise ConfigError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.format_exc_info, redact,
                    structlog.processors.TimeStamper(fmt="iso"), structlog.dev.ConsoleRenderer(colors=False),
                    redact_rendered],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=_stderr_logger,  # sys.stderr as it is when each line is written (tests swap it)
        cache_logger_on_first_use=False,
    )


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def disable_logging() -> None:
    """DSPy's ``disable_logging``: dspex prints nothing (``enable_logging`` or ``configure_logging`` turn it on)."""
    configure_logging("critical")


def enable_logging(level: str = "warning") -> None:
    """DSPy's ``enable_logging``: warnings and errors (or ``level``) reach stderr again."""
    configure_logging(level)


def configure_dspy_loggers(root_module_name: str = "dspex") -> None:
    """DSPy's ``configure_dspy_loggers``: dspex's log set-up at its default level (the module name is DSPy's
    and not needed: every dspex logger shares one configuration)."""
    configure_logging()


def disable_litellm_logging() -> None:
    """DSPy's switch for litellm's logs: dspex does not use litellm, so there are none to turn off."""


def enable_litellm_logging() -> None:
    """dspex does not use litellm: there are no litellm logs to turn on (a ConfigError says what to use)."""
    from .errors import ConfigError

    raise ConfigError("dspex does not use litellm: for each LM request's log lines call "
                      "dspex.configure_logging('debug'); dspex.inspect_history(n) shows the messages")


__all__ = ["configure_logging", "redact", "redact_rendered", "scrub", "disable_logging", "enable_logging",
           "configure_dspy_loggers", "disable_litellm_logging", "enable_litellm_logging"]
