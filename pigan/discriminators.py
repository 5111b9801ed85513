"""Drop-in import path of ``pigan.model.discriminators``: ``import pigan.discriminators`` gives that very module."""
import sys

from pigan.model import discriminators as _module

sys.modules[__name__] = _module
