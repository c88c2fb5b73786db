"""A convention member whose capabilities carry a LoadMarker: ``python node_script.py LEADER BIND PORT MARKER``."""

from __future__ import annotations

import sys

from supervision.node import Node, serve
from tests.supervision.probe import LoadMarker

if __name__ == "__main__":
    leader, bind, port, marker = sys.argv[1:5]
    serve(Node(leader, bind, int(port), capabilities={"probe": LoadMarker(marker)}))
