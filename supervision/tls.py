"""Optional TLS under the authenticated channel: the cluster's traffic encrypted, and each end of every
connection proving with a certificate your CA signed that it is a member (mutual authentication, as
Erlang's ``inet_tls_dist`` and Dask's ``tls://``).

TLS sits beneath the cookie: a connection first completes a TLS handshake in which both sides present a
certificate and check the other's against your CA (``CERT_REQUIRED`` both ways, TLS 1.2 or later), then
the cookie's challenge-response and its HMAC-checked records run inside it (:mod:`supervision.channel`).
Names in the certificates are not checked: hosts join by address, and membership is your CA's signature
(issue every member's certificate from a CA of the cluster's own). Without TLS, the default, records are
authenticated but readable on the wire.

Every process of a cluster uses the same setting: a peer without TLS, or whose certificate another CA
signed, is refused (``Rejection.TLS``) before a byte reaches Thespian. Configure it with
``TlsConfig(cert, key, ca)`` on ``ActorRuntime`` / ``Node`` / ``dspex.runtime``, ``--tls-cert --tls-key
--tls-ca`` on ``dspex host`` and ``python -m supervision.node``, or the environment variables
``DSPEX_TLS_CERT``, ``DSPEX_TLS_KEY`` and ``DSPEX_TLS_CA`` (paths; all three or none). Only the paths are
held: the private key is read by ``ssl`` when the contexts are made and never kept, shown or pickled.
"""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .errors import TlsError

ENV = {"cert": "DSPEX_TLS_CERT", "key": "DSPEX_TLS_KEY", "ca": "DSPEX_TLS_CA"}
FLAGS = {"cert": "--tls-cert", "key": "--tls-key", "ca": "--tls-ca"}


@dataclass(frozen=True)
class TlsConfig:
    """PEM files: ``cert`` this process's certificate (with its chain), ``key`` its private key, ``ca`` the
    certificate(s) of the CA that signs every member's certificate."""

    cert: str
    key: str
    ca: str

    def __post_init__(self) -> None:
        for name in ("cert", "key", "ca"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise TlsError(f"TlsConfig.{name} must be a path to a PEM file ({FLAGS[name]}, {ENV[name]})")
            object.__setattr__(self, name, str(Path(value).expanduser()))

    def contexts(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        """The (server, client) contexts of a process: each presents ``cert`` and requires the peer's
        certificate, signed by ``ca``."""
        for name in ("cert", "key", "ca"):
            path = getattr(self, name)
            if not os.path.isfile(path):
                raise TlsError(f"the TLS {name} file {path} does not exist ({FLAGS[name]}, {ENV[name]})")
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False  # members are known by their CA's signature, not by a name (module docstring)
        server.num_tickets = 0  # no session resumption: a connection lives as long as its peers
        for context in (server, client):
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.verify_mode = ssl.CERT_REQUIRED
            try:
                context.load_cert_chain(self.cert, self.key)
            except (ssl.SSLError, ValueError) as exc:
                raise TlsError(f"cannot use the TLS certificate {self.cert} with the key {self.key}: {exc.args[-1]} "
                               "(both PEM, and the key the certificate's own?)") from None
            try:
                context.load_verify_locations(cafile=self.ca)
            except ssl.SSLError as exc:
                raise TlsError(f"cannot read the TLS CA file {self.ca}: {exc.args[-1]} (PEM certificates?)") from None
        return server, client


def resolve(tls: TlsConfig | None = None, env: Mapping[str, str] | None = None) -> TlsConfig | None:
    """``tls`` if given, else the one the environment names (``DSPEX_TLS_CERT`` / ``_KEY`` / ``_CA``: all
    three, or none for no TLS), else None."""
    if tls is not None:
        if not isinstance(tls, TlsConfig):
            raise TlsError(f"tls must be a supervision.TlsConfig(cert, key, ca), got {type(tls).__name__}")
        return tls
    env = os.environ if env is None else env
    return from_parts({name: env.get(var) for name, var in ENV.items()}, ENV, "not set")


def from_parts(given: Mapping[str, str | os.PathLike | None], labels: Mapping[str, str],
               absent: str) -> TlsConfig | None:
    """The setting of ``given`` (cert, key, ca; empty: not given): all three, or none for None; a partial one
    is a TlsError naming the missing ones by their ``labels`` (the flags, variables or settings keys they
    come from) and saying they are ``absent`` ("not set", "not given")."""
    if not any(given.values()):
        return None
    missing = [labels[name] for name in ("cert", "key", "ca") if not given.get(name)]
    if missing:
        raise TlsError(f"TLS needs all three of {', '.join(labels.values())}: {', '.join(missing)} {absent}")
    return TlsConfig(**{name: given[name] for name in ("cert", "key", "ca")})  # type: ignore[arg-type]


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls-cert --tls-key --tls-ca`` (all three, or none: then the environment's, else no TLS)."""
    for name, what in (("cert", "this host's certificate (PEM, with its chain)"), ("key", "its private key (PEM)"),
                       ("ca", "the cluster CA's certificate (PEM)")):
        parser.add_argument(FLAGS[name], dest=f"tls_{name}", default=None,
                            help=f"TLS: {what}; all three or none (default: ${ENV[name]})")


def tls_from_args(args: argparse.Namespace) -> TlsConfig | None:
    """The setting :func:`add_tls_arguments`' options give (all three, or none: None), else the environment's."""
    given = {name: getattr(args, f"tls_{name}", None) for name in ENV}
    return from_parts(given, FLAGS, "not given") if any(given.values()) else resolve()


def to_args(tls: TlsConfig | None) -> list[str]:
    """The options that give ``tls`` to a process started with :func:`add_tls_arguments`."""
    return [] if tls is None else [FLAGS["cert"], tls.cert, FLAGS["key"], tls.key, FLAGS["ca"], tls.ca]


__all__ = ["TlsConfig", "resolve", "from_parts", "add_tls_arguments", "tls_from_args", "to_args", "ENV", "FLAGS"]
