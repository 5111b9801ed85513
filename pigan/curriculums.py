"""Drop-in import path of ``pigan.model.curriculums``: ``import pigan.curriculums`` gives that very module."""
import sys

from pigan.model import curriculums as _module

sys.modules[__name__] = _module
