"""An image encoder that predicts where `pigan invert` should start: the per-layer FiLM frequency and
phase offsets from the generator's average latent (what the inversion fits) and the camera pose.

It is trained on the generator's own renders (``train_encoder``, `pigan train-encoder`), so it needs
no data set, and it serves exactly one generator: the file records the sha256 of the generator's
weights and ``load_encoder`` refuses any other. A zero prediction is the mean latent at the mean
pose, the start an inversion takes without an encoder.

Modules: ``model`` (the backbone, the Feature Pyramid Network and the heads), ``io`` (the file, the
generator hash, ``predict_start``), ``train`` (``EncoderTrainOptions``, ``train_encoder``).
"""
from __future__ import annotations

from .io import generator_hash, latent_statistics, load_encoder, predict_start, read_encoder_file, save_encoder
from .model import EncoderConfig, LatentEncoder, encoder_config_for, film_layer_count, level_of_layer
from .train import ENCODER_NAME, EncoderTrainOptions, train_encoder

__all__ = ["EncoderConfig", "LatentEncoder", "encoder_config_for", "film_layer_count", "level_of_layer",
           "generator_hash", "latent_statistics", "load_encoder", "predict_start", "read_encoder_file",
           "save_encoder", "EncoderTrainOptions", "train_encoder", "ENCODER_NAME"]
