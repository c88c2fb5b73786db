"""DSPy's ``dspy.dsp.utils.settings``: the settings object and its defaults (``DEFAULT_CONFIG``).

The values live where dspex keeps them (the runtime's ``configure``, a block's ``context``): see
``dspex.programs.settings``. ``DEFAULT_CONFIG`` is a copy: changing it changes nothing.
"""

import copy

from ...programs.settings import DEFAULTS, SettingsView, settings

DEFAULT_CONFIG = copy.deepcopy(DEFAULTS)
Settings = SettingsView

__all__ = ["settings", "DEFAULT_CONFIG", "Settings"]
