"""Scripted LM answers for the provider simulator: the Chat adapter's field-marker format."""

from __future__ import annotations


def chat(**fields) -> str:
    """``chat(answer="Paris")`` → the text a model following the Chat adapter would return."""
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in fields.items()) + "[[ ## completed ## ]]"
