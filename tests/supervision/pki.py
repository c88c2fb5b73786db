"""Throwaway TLS material for the cluster's TLS tests and benchmark: a certificate a ``trustme`` CA signs,
written as PEM files next to that CA's own."""

from __future__ import annotations

from pathlib import Path

import trustme

from supervision import TlsConfig


def member(ca: trustme.CA, folder: Path, name: str) -> TlsConfig:
    """A TlsConfig of a fresh certificate for ``name`` signed by ``ca``, its key, and ``ca``'s certificate."""
    cert = ca.issue_cert(name)
    cert.cert_chain_pems[0].write_to_path(folder / f"{name}.crt")
    cert.private_key_pem.write_to_path(folder / f"{name}.key")
    ca.cert_pem.write_to_path(folder / f"{name}-ca.pem")
    return TlsConfig(folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}-ca.pem")
