"""Drop-in import path of ``pigan.model.siren``: ``import pigan.siren`` gives that very module."""
import sys

from pigan.model import siren as _module

sys.modules[__name__] = _module
