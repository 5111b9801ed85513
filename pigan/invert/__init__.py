"""Inversion (what `pigan invert` runs): fit a frozen generator's latent to a photo, then render novel
views (pi-GAN's inversion).

Start from the mean frequencies and phase shifts of the mapping network over 10 000 z; optimise
additive offsets with Adam (lr 1e-2, weight decay 1e-4, learning rate x0.75 every 100 iterations)
for ~700 iterations; the loss is the MSE between the render at the mean pose and the target. The
fitted (frequencies, phases) then render any other pose. pi-GAN also adds annealed noise
0.03 * randn * (1 - i/n) to the averages and jitters the sample depths; both are off by default
(``InvertOptions(noise_std=0.03, jitter=True)``, ``--noise 0.03 --jitter``, restore them): without
them the clean error falls monotonically on the demo model's images, and ends lower (see README).

Every ``check_every`` iterations a clean render (fixed importance samples, no noise) is scored; the
best iterate is returned with the final one's score, and a check far worse than the best restarts
from the best at half the learning rate: with Adam at lr 1e-2 every raw frequency offset moves by
up to lr per step and the siren multiplies it by 15, so late steps can overshoot (on the demo model
under pi-GAN's noisy loss, the density grows until it fills the frame and the error climbs back up).

``fit_pose`` (``--fit-pose``) optimises pitch and yaw too. The raw offsets are free enough to imitate
a pose change (on the demo model a fixed-pose fit of a render 17 degrees off in yaw scores as high as
a fit at the true pose), so the pose is fitted first together with the mapping network's z
(``z_iterations``, from z = 0): z keeps the latent on the generator's own manifold, where a pose
change cannot be hidden as easily; the offsets then refine from that z and pose. The start pose is the one the
checkpoint's discriminator predicts when its position head was trained (pos_lambda > 0: D regresses
the (pitch, yaw) each fake was rendered at), else the best of a small grid of poses after a short fit.

FENeRF's inversion of a semantic generator (``invert(..., mask=LABELS)``) fits the image and its label
map together: 0.2 x the pixel MSE + 1 x the MSE between the rendered semantic planes and the mask's, plus
1 x the offsets' norm (FENeRF's README command; its LPIPS term is left out: no perceptual network is
available offline). FENeRF's editing (``refit_shape``, `pigan edit`) refits only the geometry columns
of the inverted modulations to an edited mask, the appearance columns fixed.

Modules: ``options`` (InvertOptions), ``objectives`` (the losses, the mask checks), ``fit`` (the
optimisation), ``pose`` (start poses), ``outputs`` (the target image, the written files, the summary
line), ``semantic`` (mask files, semantic outputs), ``edit`` (the shape refit and its outputs).
"""
from __future__ import annotations

from .edit import EDIT_ITERATIONS, describe_edit, edit_scores, refit_shape, write_edit_outputs
from .fit import fit_stage, invert, mean_latent, render_latent, render_outputs, semantic_fit
from .objectives import PixelObjective, SemanticObjective, check_mask
from .options import InvertOptions
from .outputs import load_image, novel_views, orbit_poses, psnr, save_latent, summary, write_outputs
from .pose import checkpoint_pose_head, discriminator_pose, one_image, pose_grid
from .semantic import label_images, load_mask, mask_background, write_semantic_outputs

__all__ = ["InvertOptions", "invert", "fit_stage", "mean_latent", "render_latent", "render_outputs", "load_image",
           "psnr", "novel_views", "orbit_poses", "write_outputs", "save_latent", "summary", "checkpoint_pose_head",
           "discriminator_pose", "one_image", "pose_grid", "semantic_fit", "PixelObjective", "SemanticObjective",
           "check_mask", "load_mask", "mask_background", "label_images", "write_semantic_outputs", "refit_shape",
           "edit_scores", "describe_edit", "write_edit_outputs", "EDIT_ITERATIONS"]
