"""``dspex.Settings``: every setting of dspex in one object, from one precedence order.

explicit arguments > environment (``DSPEX_*``; provider keys also under their usual names, e.g.
``OPENAI_API_KEY``) > a TOML file (``config=``, else ``$DSPEX_CONFIG``, else ``./dspex.toml`` if present)
> defaults. A bad value is a :class:`~dspex.errors.ConfigError` naming the key, where it came from
(argument / env VAR / file:line) and what is expected. Keys are ``SecretStr``: never printed.

    settings = dspex.Settings.load()                    # what a runtime uses when given none
    dspex.runtime(settings=dspex.Settings.load(config="team.toml", budget_usd=5))
    settings.source("budget_usd")                       # 'argument' | 'env DSPEX_BUDGET_USD' | 'team.toml:3' | 'default'
"""

from __future__ import annotations

import os
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError
from .providers import KEY_FIELDS, PROVIDERS

PREFIX = "DSPEX_"
HOST_CAPABILITY = "dspex.host"  # what a `dspex host` node advertises (the dashboard tells hosts by it)


class Settings(BaseSettings):
    """dspex's settings (see the module docstring for where each value may come from)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid", populate_by_name=True,
                                      validate_default=True, frozen=True)

    model: str = Field("local/smollm2-135m", description="the default model, 'provider/model'")
    # one key field per provider that takes a key, from the provider registry (dspex/providers.py):
    # openai_api_key, anthropic_api_key, gemini_api_key, ...; each also read from the provider's usual
    # variables (OPENAI_API_KEY, ...). A class body's namespace is a plain dict, so they are declared
    # in a loop, in the registry's order, right here.
    for _provider, _field in KEY_FIELDS.items():
        __annotations__[_field] = "SecretStr | None"
        locals()[_field] = Field(None, description=f"the {_provider} API key; also from "
                                 + " or ".join(PROVIDERS[_provider].key_env))
    del _provider, _field
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict,
                                                   description="'provider/model' -> (USD per 1M prompt, completion)")
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "dspex")
    runs_dir: Path = Path("runs")
    base: Literal["local", "multiproc", "tcp"] = "local"
    budget_usd: float | None = Field(None, ge=0)
    budget_tokens: int | None = Field(None, ge=0)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(0, ge=0, le=65535)
    cookie: SecretStr | None = Field(None, description="the cluster cookie itself (DSPEX_COOKIE); the process bases "
                                     "authenticate every connection with it (default: ~/.dspex/cookie)")
    cookie_file: Path | None = Field(None, description="a file holding the cluster cookie (mode 600)")
    tls_cert: Path | None = Field(None, description="TLS between hosts: this host's certificate (PEM); with "
                                  "tls_key and tls_ca, every connection is TLS both ways (supervision.tls)")
    tls_key: Path | None = Field(None, description="TLS: this host's private key (PEM)")
    tls_ca: Path | None = Field(None, description="TLS: the cluster CA's certificate (PEM), that signs every host's")
    _origin: tuple | None = PrivateAttr(None)  # what load() read, to say where each value came from

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        provider, _, name = value.partition("/")
        if not name or provider not in PROVIDERS:
            raise ValueError(f"must be 'provider/model' with provider one of {', '.join(PROVIDERS)}")
        return value

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict) -> dict:
        for model, (prompt, completion) in value.items():
            if prompt < 0 or completion < 0:
                raise ValueError(f"the price of {model} must be two numbers >= 0 (USD per 1M tokens)")
        return value

    def tls(self) -> Any:
        """The ``supervision.TlsConfig`` of ``tls_cert`` / ``tls_key`` / ``tls_ca`` (None when none is set)."""
        from supervision import TlsError
        from supervision.tls import from_parts

        try:
            return from_parts({"cert": self.tls_cert, "key": self.tls_key, "ca": self.tls_ca},
                              {"cert": "tls_cert", "key": "tls_key", "ca": "tls_ca"}, "not set")
        except TlsError as exc:
            raise ConfigError(f"settings: {exc}") from None

    # --- loading -----------------------------------------------------------------------------------

    @classmethod
    def load(cls, config: str | Path | None = None, environ: Mapping[str, str] | None = None,
             **overrides: Any) -> "Settings":
        """The settings from ``overrides``, the environment, the TOML file and the defaults, in that order."""
        env = dict(os.environ if environ is None else environ)
        path = _config_path(config, env)
        document, lines = _read_toml(path) if path is not None else ({}, {})
        unknown = sorted(set(document) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"settings: unknown key {unknown[0]!r} in {path}:{lines.get(unknown[0], 1)}; known: "
                              f"{', '.join(cls.model_fields)}")
        bad_env = sorted(k for k in env if k.startswith(PREFIX) and k != PREFIX + "CONFIG"
                         and k[len(PREFIX):].lower() not in cls.model_fields)
        if bad_env:
            raise ConfigError(f"settings: the environment variable {bad_env[0]} names no setting; known: "
                              + ", ".join(PREFIX + k.upper() for k in cls.model_fields))
        merged = dict(document)
        for name in cls.model_fields:
            for var in _env_names(name):
                if var in env:
                    merged[name] = _parse_env(name, env[var])
                    break
        merged.update(overrides)
        try:
            settings = cls(**merged)
        except ValidationError as exc:
            raise _config_error(exc, overrides, env, path, lines) from None
        named = {var for name in cls.model_fields for var in _env_names(name)}
        settings._origin = (set(overrides), {k: "" for k in env if k in named}, path, lines, set(document))
        return settings

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple:
        """``load`` merges arguments, environment and file itself (it must know each value's source)."""
        return (init_settings,)

    @property
    def config_file(self) -> Path | None:
        """The TOML file these settings read (None: none)."""
        return self._origin[2] if self._origin is not None else None

    def source(self, key: str) -> str:
        """Where ``key``'s value came from: 'argument', 'env VAR', 'FILE:LINE' or 'default'."""
        if key not in type(self).model_fields:
            raise ConfigError(f"settings has no key {key!r}")
        origin = self._origin
        if origin is None:
            return "argument" if key in self.model_fields_set else "default"
        explicit, env, path, lines, in_file = origin
        return _source_of(key, explicit, env, path, lines, in_file)

    def key(self, provider: str) -> str | None:
        """The provider's API key (None: none set)."""
        field = KEY_FIELDS.get(provider)
        secret = getattr(self, field) if field else None
        return secret.get_secret_value() if secret is not None else None

    def __getstate__(self) -> dict:
        """Pickled without its keys and cookie (as an LM handle is): the receiving process reads its own."""
        state = super().__getstate__()
        state["__dict__"] = {**state["__dict__"], **{field: None for field in SECRET_FIELDS}}
        return state

    def report(self) -> list[tuple[str, str, str]]:
        """(key, value as shown, where it came from) for every setting; keys show as set / not set."""
        rows = []
        for key in type(self).model_fields:
            value = getattr(self, key)
            shown = (("set" if value is not None else "not set") if key in SECRET_FIELDS
                     else str(value) if isinstance(value, Path) else repr(value))  # a path as the shell writes it
            rows.append((key, shown, self.source(key)))
        return rows


SECRET_FIELDS = frozenset((*KEY_FIELDS.values(), "cookie"))  # never shown, never pickled
_KEY_ENV = {field: PROVIDERS[provider].key_env for provider, field in KEY_FIELDS.items()}


def _env_names(name: str) -> list[str]:
    """The variables a setting is read from: ``DSPEX_<NAME>``, then a key's usual ones (``OPENAI_API_KEY``)."""
    return [PREFIX + name.upper(), *_KEY_ENV.get(name, ())]


def _parse_env(name: str, raw: str) -> Any:
    """Structured settings (``prices``) are JSON in the environment; the rest is parsed by the field's type."""
    if name == "prices":
        import json

        try:
            return json.loads(raw)
        except ValueError:
            return raw  # the validation error then names the variable
    return raw


def _config_path(config: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"settings: the config file {path} does not exist or is not a file")
        return path
    if env.get(PREFIX + "CONFIG"):
        path = Path(env[PREFIX + "CONFIG"])
        if not path.is_file():
            raise ConfigError(f"settings: DSPEX_CONFIG names {path}, which does not exist or is not a file")
        return path
    default = Path("dspex.toml")
    return default if default.is_file() else None


def _read_toml(path: Path) -> tuple[dict, dict[str, int]]:
    """The document and the line each top-level key is on."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"settings: cannot read {path}: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings: {path} is not valid TOML: {exc}") from None
    lines = {}
    for number, line in enumerate(text.splitlines(), 1):
        key = line.split("=", 1)[0].strip().strip('"') if "=" in line and not line.lstrip().startswith("#") else ""
        if key and key not in lines:
            lines[key] = number
    return document, lines


def _source_of(key: str, explicit: set, env: Mapping[str, str], path: Path | None, lines: dict, in_file: set) -> str:
    if key in explicit:
        return "argument"
    for var in _env_names(key):
        if var in env:
            return f"env {var}"
    if key in in_file and path is not None:
        return f"{path}:{lines.get(key, 1)}"
    return "default"


def _config_error(exc: ValidationError, overrides: dict, env: Mapping[str, str], path: Path | None,
                  lines: dict) -> ConfigError:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else "?"
    in_file = set(lines)
    where = _source_of(key, set(overrides), env, path, lines, in_file)
    shown = "***" if key in SECRET_FIELDS else repr(error.get("input"))
    return ConfigError(f"settings: {key} = {shown} (from {where}): {error['msg']}")


__all__ = ["Settings", "PROVIDERS", "KEY_FIELDS"]
