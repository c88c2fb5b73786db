"""``python -m dspex host``: make this machine a worker host of a leader's dspex runtime.

    python -m dspex host --leader 10.0.0.5:1900 --bind 10.0.0.6 --port 1900

The leader runs ``dspex.runtime("tcp", bind_host="10.0.0.5", admin_port=1900, peers=["10.0.0.6"])``
and ``Evaluate(...).run_distributed(program, hosts=["10.0.0.6:1900"])``. This host accepts
connections only from the leader (and ``--peer`` addresses): what they send is pickled code, so list
only machines you trust. API keys for the LM calls made here come from this host's environment.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    from supervision.node import add_node_arguments, node_from_args, serve

    parser = argparse.ArgumentParser(prog="python -m dspex host", description=__doc__.split("\n\n")[0])
    add_node_arguments(parser, default_port=1900)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    # Import what workers run before the actor system forks them (each fork then starts warm).
    import cloudpickle  # noqa: F401
    import requests  # noqa: F401

    from . import evaluate, programs  # noqa: F401
    from .config import HOST_CAPABILITY
    from .logs import configure_logging

    configure_logging(args.log_level)
    serve(node_from_args(args, {HOST_CAPABILITY: "1"}, name="dspex-host"), ready="dspex host ready")
    return 0
