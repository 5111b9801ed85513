"""The model: pi-GAN's mapping network and FiLM-SIREN generators (``siren``, ``generators``), FENeRF's
semantic siren and generator (``fenerf_siren``, ``fenerf``), the discriminators, pi-GAN's curricula with
their loading and validation (``curriculums``, ``curriculum_loading``) and the settings of one render
(``render_options``). Built on ``pigan.ops``
and ``pigan.common`` only; the jobs (rendering, inversion, evaluation, shapes, training) are built on it.

``pigan.siren``, ``pigan.generators``, ``pigan.discriminators`` and ``pigan.curriculums`` are these
modules under the import paths of pi-GAN's own files (drop-in imports).
"""
