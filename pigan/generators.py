"""Drop-in import path of ``pigan.model.generators``: ``import pigan.generators`` gives that very module."""
import sys

from pigan.model import generators as _module

sys.modules[__name__] = _module
