"""Public ops of pigan-kernels. Each picks the fastest available backend for its tensors' device
(see ``available_backends``, ``use_backend``, ``set_default_backend``, $PIGAN_BACKEND); each has an
underscore-named pure-PyTorch reference twin with the same signature. ``backend_status(name,
device)`` says whether one backend can run there and why not; ``native_build_info()`` is what the
compiled extension reports about its build. How an op is written: ``pigan.ops._backend``'s docstring."""
from ._backend import (BACKENDS, available_backends, backend_status, current_backend, native_build_info,
                       set_default_backend, use_backend)
from .compositing import (_composite, _composite_midpoint, _fancy_integration, composite, composite_midpoint,
                          draw_noise, fancy_integration)
from .film import _film_siren, film_siren
from .film_stack import _film_siren_stack, film_siren_stack
from .rays import (create_cam2world_matrix, get_initial_rays_trig, normalize_vecs, perturb_points,
                   sample_camera_positions, transform_sampled_points)
from .sampling import (_merge_samples, _merge_samples_values, _sample_pdf, draw_uniforms, merge_samples,
                       merge_samples_values, sample_pdf)
