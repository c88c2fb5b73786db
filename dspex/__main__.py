"""``python -m dspex <command>``: ``demo``; ``host`` (a worker host for ``Evaluate.run_distributed``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m dspex demo [--model M] [--n N] [--demos K] [--cot]\n"
              "       python -m dspex host --leader IP:PORT --bind IP [--port P] [--peer IP ...]")
        return 0 if args else 2
    if args[0] == "demo":
        from .demo import main as demo

        return demo(args[1:])
    if args[0] == "host":
        from .host import main as host

        return host(args[1:])
    print(f"unknown command {args[0]!r}; try: python -m dspex demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
