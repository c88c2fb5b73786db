"""The live dashboard: ``rt.dashboard(port=0)`` or ``dspex dashboard`` (see server.py)."""

from .server import Dashboard, DashboardApp
from .state import DashboardState

__all__ = ["Dashboard", "DashboardApp", "DashboardState"]
