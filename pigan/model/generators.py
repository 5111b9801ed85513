"""pi-GAN's generator, drop-in for ``generators.generators.ImplicitGenerator3d``.

The core is ``render``: frequencies/phases (or z) and explicit cameras in, pixels out. pi-GAN's
signatures (``forward``, ``staged_forward``, ...) draw their randomness in pi-GAN's order (stratified
jitter, camera pose, density noise of the coarse composite, the importance-sampling uniforms,
density noise of the final composite) and call the same marcher, so under
``pigan.ops.use_backend("reference")`` they compute exactly what pi-GAN computes.
"""
from __future__ import annotations


from contextlib import contextmanager

import torch
import torch.nn as nn

from pigan import ops
from pigan.ops.rays import camera_origins, transform_points_to_world
from . import skipping
from .render_options import RenderOptions

__all__ = ["ImplicitGenerator3d", "cam2world_from_angles", "frozen", "GENERATORS"]

# Constructor options of the siren that ImplicitGenerator3d forwards (beyond pi-GAN's fixed ones).
SIREN_OPTIONS = ("hidden_dim", "map_hidden_dim", "mapping_hidden_layers", "feature_grid_channels",
                 "feature_grid_size", "feature_grid_init_std")


def _resolve_siren(siren):
    if isinstance(siren, str):
        from . import siren as siren_mod
        if siren not in siren_mod.SIRENS:
            raise ValueError(f"siren must be one of {sorted(siren_mod.SIRENS)} or a class, got {siren!r}")
        return siren_mod.SIRENS[siren]
    if not isinstance(siren, type) or not issubclass(siren, nn.Module):
        raise TypeError(f"siren must be an nn.Module class or its name, got {siren!r}")
    return siren


@contextmanager
def frozen(generator: nn.Module):
    """The generator in eval mode without gradients for its weights (fitting its inputs: inversion, an
    encoder's reconstruction loss); both restored afterwards."""
    was_training, flags = generator.training, [p.requires_grad for p in generator.parameters()]
    generator.eval()
    generator.requires_grad_(False)
    try:
        yield generator
    finally:
        for p, f in zip(generator.parameters(), flags):
            p.requires_grad_(f)
        generator.train(was_training)


def _image(rgb, B, size):
    """Composited channels rgb [B, R, C] in [0, 1] -> image [B, C, size, size] in [-1, 1]."""
    return rgb.reshape(B, size, size, rgb.shape[-1]).permute(0, 3, 1, 2).contiguous() * 2 - 1


def cam2world_from_angles(pitch, yaw, r=1.0):
    """Camera-to-world matrices [n, 4, 4] looking at the origin from pitch phi / yaw theta ([n, 1])."""
    origin = camera_origins(pitch, yaw, r)
    return ops.create_cam2world_matrix(ops.normalize_vecs(-origin), origin, device=origin.device)


class ImplicitGenerator3d(nn.Module):
    """``siren`` is a siren class (or its name), built as pi-GAN does with output_dim=4, input_dim=3.

    Extra keyword options (hidden_dim, map_hidden_dim, mapping_hidden_layers, feature_grid_*) go to
    the siren's constructor; any others are accepted and ignored, as pi-GAN does.
    """

    def __init__(self, siren, z_dim, **kwargs):
        super().__init__()
        siren_cls = _resolve_siren(siren)
        siren_kwargs = {k: kwargs[k] for k in SIREN_OPTIONS if k in kwargs}
        self.z_dim = z_dim
        self.siren = siren_cls(output_dim=4, z_dim=self.z_dim, input_dim=3, device=None, **siren_kwargs)
        self.epoch = 0
        self.step = 0
        self.device = None
        self.skip_stats = None
        self.config = {"siren": siren_cls.__name__, "z_dim": z_dim, **siren_kwargs}

    # ------------------------------------------------------------------ device and averages
    def _device(self):
        if self.device is not None:
            return torch.device(self.device)
        return next(self.parameters()).device

    def set_device(self, device):
        self.device = device
        self.siren.device = device
        self.generate_avg_frequencies()

    @torch.no_grad()
    def generate_avg_frequencies(self, n=10000):
        """Mean mapping output (frequencies, phase shifts) over n z ~ N(0, I), each [1, 9H]."""
        z = torch.randn((n, self.z_dim), device=self._device())
        frequencies, phase_shifts = self.siren.mapping_network(z)
        self.avg_frequencies = frequencies.mean(0, keepdim=True)
        self.avg_phase_shifts = phase_shifts.mean(0, keepdim=True)
        return self.avg_frequencies, self.avg_phase_shifts

    def truncate(self, z, psi):
        """Mapping output for z pulled toward the cached average: avg + psi * (raw - avg)."""
        if getattr(self, "avg_frequencies", None) is None:
            self.generate_avg_frequencies()
        with torch.no_grad():
            raw_f, raw_p = self.siren.mapping_network(z)
        f = self.avg_frequencies + psi * (raw_f - self.avg_frequencies)
        p = self.avg_phase_shifts + psi * (raw_p - self.avg_phase_shifts)
        return f, p

    # ------------------------------------------------------------------ the marcher
    def _siren_eval(self, points, freqs, phases, dirs, max_batch_size):
        """siren on points [B, N, 3] with dirs [B, N, 3]; chunked per image when max_batch_size."""
        fwd = self.siren.forward_with_frequencies_phase_shifts
        if not max_batch_size or points.shape[1] <= max_batch_size and points.shape[0] == 1:
            return fwd(points, freqs, phases, ray_directions=dirs)
        B, N, _ = points.shape
        out = None
        for b in range(B):
            for head in range(0, N, max_batch_size):
                tail = min(head + max_batch_size, N)
                o = fwd(points[b:b + 1, head:tail], freqs[b:b + 1], phases[b:b + 1],
                        ray_directions=dirs[b:b + 1, head:tail])
                if out is None:
                    out = o.new_empty(B, N, o.shape[-1])
                out[b:b + 1, head:tail] = o
        return out

    def march(self, frequencies, phase_shifts, points_cam, z_vals, dirs_cam, cam2world,
              options: RenderOptions, proposals=None):
        """Render camera-space samples seen from ``cam2world``.

        frequencies, phase_shifts [B, 9H] (raw mapping outputs); points_cam [B, R, S, 3], z_vals
        [B, R, S, 1] (already jittered), dirs_cam [B, R, 3]; cam2world [B, 4, 4]. ``options`` gives
        the marcher's settings (hierarchical_sample, clamp_mode, nerf_noise, white_back, last_back,
        fill_mode, lock_view_dependence, max_batch_size).
        Returns rgb [B, R, C] in [0, 1] (before pi-GAN's *2-1; every channel the siren gives before
        sigma: C = 3 for pi-GAN), depth [B, R, 1], weights [B, R, S', 1].
        Randomness: coarse density noise, sample_pdf uniforms, final density noise (in that order).
        With ``options.skip_empty`` (no gradients) empty space is skipped (``pigan.model.skipping``;
        ``proposals``: its per-latent occupancy, default built here) and the statistics of that are
        kept in ``self.skip_stats``.
        """
        o = options
        if o.skip_empty:
            if torch.is_grad_enabled() and (frequencies.requires_grad or phase_shifts.requires_grad
                                            or cam2world.requires_grad
                                            or any(t.requires_grad for t in self.parameters())):
                raise ValueError("skip_empty renders take no gradients (run them under torch.no_grad()); "
                                 "training and inversion losses need every sample")
            result, self.skip_stats = skipping.march_skipping(
                self, frequencies, phase_shifts, points_cam, z_vals, dirs_cam, cam2world, o, proposals)
            if result is not None:
                return result
        B, R, S, _ = points_cam.shape
        # Geometry stays in float32 (float64 for a float64 model) even when the network runs in
        # bf16/fp16 under autocast: depths in [0.88, 1.12] need more than bf16's 8 mantissa bits.
        dtype = torch.float64 if frequencies.dtype == torch.float64 else torch.float32
        points_cam, z_vals, dirs_cam = points_cam.to(dtype), z_vals.to(dtype), dirs_cam.to(dtype)
        cam2world = cam2world.to(dtype)
        # The camera is differentiable when cam2world requires grad (pose fitting in inversion).
        with torch.set_grad_enabled(torch.is_grad_enabled() and cam2world.requires_grad):
            points, dirs, origins = transform_points_to_world(points_cam, dirs_cam, cam2world)
            if o.lock_view_dependence:
                dirs_exp = torch.zeros(B, R * S, 3, device=points.device, dtype=dtype)
                dirs_exp[..., -1] = -1
            else:
                dirs_exp = dirs.unsqueeze(-2).expand(B, R, S, 3).reshape(B, R * S, 3)
            points = points.reshape(B, R * S, 3)

        coarse = self._siren_eval(points, frequencies, phase_shifts, dirs_exp, o.max_batch_size)
        coarse = coarse.reshape(B, R, S, -1)                         # [B, R, S, 4]

        if o.hierarchical_sample:
            with torch.no_grad():
                noise = ops.draw_noise(z_vals, o.nerf_noise)
                _, _, weights = ops.composite(coarse.detach(), z_vals, noise, clamp_mode=o.clamp_mode)
                weights = weights.reshape(B * R, S) + 1e-5
                z_flat = z_vals.reshape(B * R, S)
                mids = 0.5 * (z_flat[:, :-1] + z_flat[:, 1:])          # [B*R, S-1]
                z_fine = ops.sample_pdf(mids, weights[:, 1:-1], S, det=False).reshape(B, R, S, 1)
            fine_points = (origins.unsqueeze(2) + dirs.unsqueeze(2) * z_fine).reshape(B, R * S, 3)
            fine = self._siren_eval(fine_points, frequencies, phase_shifts, dirs_exp, o.max_batch_size)
            fine = fine.reshape(B, R, S, -1)
            all_z, outputs = ops.merge_samples_values(z_vals, z_fine, coarse, fine)  # [B, R, 2S, 4]
        else:
            outputs, all_z = coarse, z_vals

        noise = ops.draw_noise(all_z, o.nerf_noise)
        return ops.composite(outputs, all_z, noise, clamp_mode=o.clamp_mode, last_back=o.last_back,
                             white_back=o.white_back, fill_mode=o.fill_mode)

    # ------------------------------------------------------------------ explicit-camera rendering
    def camera_rays(self, batch_size, img_size, fov, ray_start, ray_end, num_steps, jitter=True):
        """Camera-space rays of an img_size^2 image; stratified jitter (pi-GAN's) when ``jitter``."""
        points, z_vals, dirs = ops.get_initial_rays_trig(
            batch_size, num_steps, resolution=(img_size, img_size), device=self._device(), fov=fov,
            ray_start=ray_start, ray_end=ray_end)
        if jitter:
            points, z_vals = ops.perturb_points(points, z_vals, dirs, self._device())
        return points, z_vals, dirs

    def render(self, z=None, *, frequencies=None, phase_shifts=None, cam2world=None, pitch=None,
               yaw=None, options: RenderOptions | None = None, psi=None, jitter=True, **overrides):
        """Render images at given cameras with ``options`` (default ``RenderOptions()``), any of whose
        fields may be overridden by keyword (``img_size=32``); other keywords are ignored, as pi-GAN
        does.

        Latents: ``z`` [B, z_dim] (truncated toward the average when ``psi`` is given) or raw
        ``frequencies`` / ``phase_shifts`` [B, 9H]. Cameras: ``cam2world`` [B, 4, 4] or ``pitch`` /
        ``yaw`` (radians, [B, 1], [B] or floats). Returns dict(pixels [B, 3, H, W] in [-1, 1] (the
        first three composited channels), depth [B, H, W], weights [B, H*W, S', 1], and what
        ``_extra_outputs`` adds for a siren with more channels).
        """
        o = RenderOptions.from_metadata(overrides, base=options)
        if frequencies is None:
            if z is None:
                raise ValueError("render needs z or (frequencies, phase_shifts)")
            if psi is None:
                frequencies, phase_shifts = self.siren.mapping_network(z)
            else:
                frequencies, phase_shifts = self.truncate(z, psi)
        elif phase_shifts is None:
            raise ValueError("frequencies given without phase_shifts")
        B = frequencies.shape[0]
        dev = frequencies.device
        if cam2world is None:
            if pitch is None or yaw is None:
                raise ValueError("render needs cam2world [B, 4, 4] or both pitch and yaw")
            pitch = torch.as_tensor(pitch, dtype=torch.float32, device=dev).reshape(-1, 1).expand(B, 1)
            yaw = torch.as_tensor(yaw, dtype=torch.float32, device=dev).reshape(-1, 1).expand(B, 1)
            cam2world = cam2world_from_angles(pitch, yaw)
        if cam2world.shape != (B, 4, 4):
            raise ValueError(f"cam2world must have shape [B, 4, 4] = [{B}, 4, 4], got {tuple(cam2world.shape)}")
        points, z_vals, dirs = self.camera_rays(B, o.img_size, o.fov, o.ray_start, o.ray_end, o.num_steps, jitter)
        rgb, depth, weights = self.march(frequencies, phase_shifts, points, z_vals, dirs, cam2world.to(dev), o)
        image = _image(rgb, B, o.img_size)                           # [B, C, H, W]
        out = {"pixels": image[:, :3].contiguous(), "depth": depth.reshape(B, o.img_size, o.img_size),
               "weights": weights, **self._extra_outputs(image, weights)}
        if o.skip_empty:
            out["skipping"] = self.skip_stats
        return out

    def _extra_outputs(self, image, weights) -> dict:
        """Entries of ``render``'s dict beyond pixels, depth and weights, from the whole composited image
        [B, C, H, W] in [-1, 1] and the weights: none for pi-GAN's three channels."""
        return {}

    # ------------------------------------------------------------------ pi-GAN's signatures
    def _sampled_pass(self, frequencies, phase_shifts, o: RenderOptions):
        """pi-GAN's pass: jittered rays, then a camera drawn from o's pose distribution. Returns every
        composited channel ([B, C, H, W] in [-1, 1]; C = 3 for pi-GAN), depth and the pose."""
        B = frequencies.shape[0]
        with torch.no_grad():
            points, z_vals, dirs = self.camera_rays(B, o.img_size, o.fov, o.ray_start, o.ray_end, o.num_steps)
            _, pitch, yaw = ops.sample_camera_positions(
                n=B, r=1, horizontal_stddev=o.h_stddev, vertical_stddev=o.v_stddev, horizontal_mean=o.h_mean,
                vertical_mean=o.v_mean, device=self._device(), mode=o.sample_dist)
            cam2world = cam2world_from_angles(pitch, yaw)
        rgb, depth, _ = self.march(frequencies, phase_shifts, points, z_vals, dirs, cam2world, o)
        return _image(rgb, B, o.img_size), depth, pitch, yaw

    @staticmethod
    def _pigan_options(img_size, fov, ray_start, ray_end, num_steps, h_stddev, v_stddev, h_mean, v_mean,
                       hierarchical_sample, sample_dist, lock_view_dependence, kwargs, **extra):
        """RenderOptions of pi-GAN's keyword signature; of the extra keywords pi-GAN's marcher reads
        clamp_mode, nerf_noise, white_back and last_back (others are ignored)."""
        known = {k: kwargs[k] for k in ("clamp_mode", "nerf_noise", "white_back", "last_back") if k in kwargs}
        return RenderOptions(
            img_size=img_size, num_steps=num_steps, fov=fov, ray_start=ray_start, ray_end=ray_end,
            h_mean=h_mean, v_mean=v_mean, h_stddev=h_stddev, v_stddev=v_stddev, sample_dist=sample_dist,
            hierarchical_sample=hierarchical_sample, lock_view_dependence=lock_view_dependence,
            **known, **extra)

    def forward(self, z, img_size, fov, ray_start, ray_end, num_steps, h_stddev, v_stddev, h_mean,
                v_mean, hierarchical_sample, sample_dist=None, lock_view_dependence=False, **kwargs):
        """pi-GAN's training pass: random camera and jitter -> (pixels [B, 3, H, W] in [-1, 1] (every
        composited channel, [B, C, H, W], for a siren with more than rgb), pose [B, 2] = (pitch, yaw))."""
        frequencies, phase_shifts = self.siren.mapping_network(z)
        return self.forward_with_frequencies(
            frequencies, phase_shifts, img_size, fov, ray_start, ray_end, num_steps, h_stddev,
            v_stddev, h_mean, v_mean, hierarchical_sample, sample_dist, lock_view_dependence, **kwargs)

    def forward_with_frequencies(self, frequencies, phase_shifts, img_size, fov, ray_start, ray_end,
                                 num_steps, h_stddev, v_stddev, h_mean, v_mean, hierarchical_sample,
                                 sample_dist=None, lock_view_dependence=False, **kwargs):
        o = self._pigan_options(img_size, fov, ray_start, ray_end, num_steps, h_stddev, v_stddev, h_mean,
                                v_mean, hierarchical_sample, sample_dist, lock_view_dependence, kwargs)
        pixels, _, pitch, yaw = self._sampled_pass(frequencies, phase_shifts, o)
        return pixels, torch.cat([pitch, yaw], -1)

    def staged_forward(self, z, img_size, fov, ray_start, ray_end, num_steps, h_stddev, v_stddev,
                       h_mean, v_mean, psi=1, lock_view_dependence=False, max_batch_size=50000,
                       depth_map=False, near_clip=0, far_clip=2, sample_dist=None,
                       hierarchical_sample=False, **kwargs):
        """pi-GAN's inference pass: truncation with fresh averages (as pi-GAN, recomputed every call),
        the siren in chunks of max_batch_size points, no grad. Returns (pixels, depth) on the CPU."""
        self.generate_avg_frequencies()
        with torch.no_grad():
            f, p = self.truncate(z, psi)
        return self.staged_forward_with_frequencies(
            f, p, img_size, fov, ray_start, ray_end, num_steps, h_stddev, v_stddev, h_mean, v_mean,
            psi=psi, lock_view_dependence=lock_view_dependence, max_batch_size=max_batch_size,
            sample_dist=sample_dist, hierarchical_sample=hierarchical_sample, **kwargs)

    def staged_forward_with_frequencies(self, truncated_frequencies, truncated_phase_shifts, img_size,
                                        fov, ray_start, ray_end, num_steps, h_stddev, v_stddev, h_mean,
                                        v_mean, psi=0.7, lock_view_dependence=False,
                                        max_batch_size=50000, depth_map=False, near_clip=0,
                                        far_clip=2, sample_dist=None, hierarchical_sample=False,
                                        **kwargs):
        o = self._pigan_options(img_size, fov, ray_start, ray_end, num_steps, h_stddev, v_stddev, h_mean,
                                v_mean, hierarchical_sample, sample_dist, lock_view_dependence, kwargs,
                                max_batch_size=max_batch_size, fill_mode=kwargs.get("fill_mode"))
        with torch.no_grad():
            pixels, depth, _, _ = self._sampled_pass(truncated_frequencies, truncated_phase_shifts, o)
        B = pixels.shape[0]
        return pixels.cpu(), depth.reshape(B, img_size, img_size).contiguous().cpu()


GENERATORS = {"ImplicitGenerator3d": ImplicitGenerator3d}
