"""Training curricula in pi-GAN's format.

A curriculum is a dict: integer keys are the training steps at which a stage starts (each a dict of
batch_size, num_steps, img_size, batch_split, gen_lr, disc_lr); an empty stage marks the end of
training; every other key is a setting shared by all stages. ``extract_metadata(curriculum, step)``
merges the stage in force at ``step`` with the shared settings.

Keys beyond pi-GAN's (read by our model builders, ignored by pi-GAN's code): ``hidden_dim``,
``map_hidden_dim`` and ``mapping_hidden_layers`` (siren), ``disc_max_channels`` (discriminator width
cap), ``eval_white_back``. ``dataset_path`` is None: pass a folder, or use the embedded procedural
dataset.
"""
from __future__ import annotations

import copy
import json
import math

__all__ = ["CelebA", "CARLA", "CATS", "DEMO", "CURRICULA", "get_curriculum", "extract_metadata",
           "next_upsample_step", "last_upsample_step", "get_current_step", "stage_steps",
           "training_stages", "final_step", "stage_metadata", "int_keys", "to_json", "from_json"]

CelebA = {
    0: {"batch_size": 28 * 2, "num_steps": 12, "img_size": 64, "batch_split": 2, "gen_lr": 6e-5,
        "disc_lr": 2e-4},
    int(200e3): {},
    "dataset_path": None,
    "fov": 12,
    "ray_start": 0.88,
    "ray_end": 1.12,
    "fade_steps": 10000,
    "h_stddev": 0.3,
    "v_stddev": 0.155,
    "h_mean": math.pi * 0.5,
    "v_mean": math.pi * 0.5,
    "sample_dist": "gaussian",
    "topk_interval": 2000,
    "topk_v": 0.6,
    "betas": (0, 0.9),
    "unique_lr": False,
    "weight_decay": 0,
    "r1_lambda": 0.2,
    "latent_dim": 256,
    "grad_clip": 10,
    "model": "SPATIALSIRENBASELINE",
    "generator": "ImplicitGenerator3d",
    "discriminator": "CCSEncoderDiscriminator",
    "dataset": "CelebA",
    "clamp_mode": "relu",
    "z_dist": "gaussian",
    "hierarchical_sample": True,
    "z_lambda": 0,
    "pos_lambda": 15,
    "last_back": False,
    "eval_last_back": True,
}

CARLA = {
    0: {"batch_size": 30, "num_steps": 48, "img_size": 32, "batch_split": 1, "gen_lr": 4e-5,
        "disc_lr": 4e-4},
    int(10e3): {"batch_size": 14, "num_steps": 48, "img_size": 64, "batch_split": 2, "gen_lr": 2e-5,
                "disc_lr": 2e-4},
    int(55e3): {"batch_size": 10, "num_steps": 48, "img_size": 128, "batch_split": 5, "gen_lr": 10e-6,
                "disc_lr": 10e-5},
    int(200e3): {},
    "dataset_path": None,
    "fov": 30,
    "ray_start": 0.7,
    "ray_end": 1.3,
    "fade_steps": 10000,
    "sample_dist": "spherical_uniform",
    "h_stddev": math.pi,
    "v_stddev": math.pi / 4 * 85 / 90,
    "h_mean": math.pi * 0.5,
    "v_mean": math.pi / 4 * 85 / 90,
    "topk_interval": 1000,
    "topk_v": 1,
    "betas": (0, 0.9),
    "unique_lr": False,
    "weight_decay": 0,
    "r1_lambda": 10,
    "latent_dim": 256,
    "grad_clip": 1,
    "model": "TALLSIREN",
    "generator": "ImplicitGenerator3d",
    "discriminator": "ProgressiveEncoderDiscriminator",
    "dataset": "Carla",
    "white_back": True,
    "clamp_mode": "relu",
    "z_dist": "gaussian",
    "hierarchical_sample": True,
    "z_lambda": 0,
    "pos_lambda": 0,
    "learnable_dist": False,
}

CATS = {
    0: {"batch_size": 28, "num_steps": 24, "img_size": 64, "batch_split": 4, "gen_lr": 6e-5,
        "disc_lr": 2e-4},
    int(200e3): {},
    "dataset_path": None,
    "fov": 12,
    "ray_start": 0.8,
    "ray_end": 1.2,
    "fade_steps": 10000,
    "h_stddev": 0.5,
    "v_stddev": 0.4,
    "h_mean": math.pi * 0.5,
    "v_mean": math.pi * 0.5,
    "sample_dist": "uniform",
    "topk_interval": 2000,
    "topk_v": 0.6,
    "betas": (0, 0.9),
    "unique_lr": False,
    "weight_decay": 0,
    "r1_lambda": 0.2,
    "latent_dim": 256,
    "grad_clip": 10,
    "model": "SPATIALSIRENBASELINE",
    "generator": "ImplicitGenerator3d",
    "discriminator": "StridedDiscriminator",
    "dataset": "Cats",
    "clamp_mode": "relu",
    "z_dist": "gaussian",
    "hierarchical_sample": True,
    "z_lambda": 0,
    "pos_lambda": 0,
    "last_back": False,
    "eval_last_back": True,
}

# Small enough to train in minutes on 2 CPU cores: a narrow siren (width 32, mapping width 64), a
# narrow discriminator (<= 64 channels), 16^2 then 32^2 images, 8 + 8 samples per ray. TALLSIREN
# rather than SPATIALSIRENBASELINE: without the latter's point warp the first layer's sine arguments
# are small at init, so the initial density field is smooth blobs rather than per-pixel static, which
# keeps this short run from collapsing to a flat colour. The camera is CelebA's; the procedural
# dataset renders on a white background, hence white_back.
DEMO = {
    0: {"batch_size": 16, "num_steps": 8, "img_size": 16, "batch_split": 1, "gen_lr": 2e-4,
        "disc_lr": 4e-4},
    300: {"batch_size": 8, "num_steps": 8, "img_size": 32, "batch_split": 1, "gen_lr": 1e-4,
          "disc_lr": 2e-4},
    600: {},
    "dataset_path": None,
    "fov": 12,
    "ray_start": 0.88,
    "ray_end": 1.12,
    "fade_steps": 100,
    "h_stddev": 0.3,
    "v_stddev": 0.155,
    "h_mean": math.pi * 0.5,
    "v_mean": math.pi * 0.5,
    "sample_dist": "gaussian",
    "topk_interval": 200,
    "topk_v": 0.6,
    "betas": (0, 0.9),
    "unique_lr": False,
    "weight_decay": 0,
    "r1_lambda": 1,
    "latent_dim": 64,
    "grad_clip": 10,
    "model": "TALLSIREN",
    "generator": "ImplicitGenerator3d",
    "discriminator": "CCSEncoderDiscriminator",
    "dataset": "procedural",
    "clamp_mode": "relu",
    "z_dist": "gaussian",
    "hierarchical_sample": True,
    "z_lambda": 0,
    "pos_lambda": 15,
    "white_back": True,
    "last_back": False,
    "hidden_dim": 32,
    "map_hidden_dim": 64,
    "disc_max_channels": 64,
    "nerf_noise_steps": 200,
}

# The demo on the embedded faces: heads facing the mean camera, so the camera pose shows in every image
# (as in CelebA) and the generator must learn it; twice the demo's steps at 32x32.
FACES = {**DEMO,
         300: {**DEMO[300]},
         1200: {},
         "dataset": "faces"}
del FACES[600]

# How latent codes z are drawn (the "z_dist" key).
Z_DISTRIBUTIONS = ("gaussian", "uniform")

CURRICULA = {"celeba": CelebA, "carla": CARLA, "cats": CATS, "demo": DEMO, "faces": FACES}


def get_curriculum(name):
    """A deep copy of the curriculum called ``name`` (celeba, carla, cats, demo, faces; any case)."""
    key = name.lower() if isinstance(name, str) else None
    if key not in CURRICULA:
        raise ValueError(f"unknown curriculum {name!r}; expected one of {sorted(CURRICULA)}")
    return copy.deepcopy(CURRICULA[key])


def stage_steps(curriculum):
    """The sorted integer step keys (stage starts) of a curriculum, the empty end stage included."""
    return sorted(k for k in curriculum if isinstance(k, int) and not isinstance(k, bool))


def training_stages(curriculum):
    """The starts of the stages that train (the non-empty ones), sorted."""
    return [s for s in stage_steps(curriculum) if curriculum[s]]


def final_step(curriculum):
    """The step of the last (empty) stage, when training ends; inf when there is none."""
    ends = [s for s in stage_steps(curriculum) if not curriculum[s]]
    return min(ends) if ends else math.inf


def extract_metadata(curriculum, current_step):
    """The stage in force at ``current_step`` merged with the shared (non-integer) settings."""
    out = {}
    for step in reversed(stage_steps(curriculum)):
        if step <= current_step:
            out.update(curriculum[step])
            break
    for key, value in curriculum.items():
        if not (isinstance(key, int) and not isinstance(key, bool)):
            out[key] = value
    return out


def stage_metadata(curriculum, current_step):
    """``extract_metadata``, except that past the end of training (in the empty end stage) the last
    training stage stays in force: the settings to render a finished run's images with."""
    stages = training_stages(curriculum)
    if not stages:
        return extract_metadata(curriculum, current_step)
    past = [s for s in stages if s <= current_step]
    return extract_metadata(curriculum, max(past) if past else stages[0])


def next_upsample_step(curriculum, current_step):
    """The next stage start where the image size grows; inf when none. As in pi-GAN, a stage without
    img_size (the empty end stage) counts as size 512, so the end of training is such a step."""
    current_size = extract_metadata(curriculum, current_step).get("img_size")
    if current_size is None:                                        # past the end of training
        return math.inf
    for step in stage_steps(curriculum):
        if step > current_step and curriculum[step].get("img_size", 512) > current_size:
            return step
    return math.inf


def last_upsample_step(curriculum, current_step):
    """The start of the stage whose image size is in force (where fade-in is counted from); past the
    end of training, the last training stage's size stays in force (``stage_metadata``)."""
    current_size = stage_metadata(curriculum, current_step).get("img_size")
    for step in stage_steps(curriculum):
        if step <= current_step and curriculum[step].get("img_size") == current_size:
            return step
    return 0


def get_current_step(curriculum, epoch):
    """pi-GAN's epoch-based helper: the number of ``update_epochs`` entries already reached."""
    return sum(1 for e in curriculum.get("update_epochs", ()) if epoch >= e)


def int_keys(curriculum):
    """JSON has only string keys: stage keys such as "0" or "2000" become ints again."""
    return {(int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k): v
            for k, v in curriculum.items()}


def to_json(curriculum) -> str:
    """The curriculum as JSON (stage keys as strings, tuples as lists)."""
    return json.dumps({str(k): v for k, v in curriculum.items()},
                      default=lambda o: list(o) if isinstance(o, tuple) else str(o))


def from_json(text: str) -> dict:
    return int_keys(json.loads(text))
