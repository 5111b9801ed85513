"""pigan.curriculums: pi-GAN's curricula, the stage helpers, JSON round trips; RenderOptions built
from a curriculum."""
import dataclasses
import math

import pytest
import torch

from pigan import curriculums as cur
from pigan.generators import ImplicitGenerator3d
from pigan.model.render_options import RenderOptions


def test_curricula_and_helpers():
    carla = cur.get_curriculum("CARLA")
    m = cur.extract_metadata(carla, 12_000)
    assert (m["batch_size"], m["num_steps"], m["img_size"], m["batch_split"]) == (14, 48, 64, 2)
    assert m["fov"] == 30 and m["sample_dist"] == "spherical_uniform" and m["white_back"] is True
    assert m["model"] == "TALLSIREN" and m["discriminator"] == "ProgressiveEncoderDiscriminator"
    assert cur.next_upsample_step(carla, 0) == 10_000 and cur.next_upsample_step(carla, 10_000) == 55_000
    # As in pi-GAN, the empty end stage counts as an upsample (its img_size defaults to 512).
    assert cur.next_upsample_step(carla, 60_000) == 200_000
    assert cur.next_upsample_step({0: {"img_size": 32}}, 5) == math.inf
    assert cur.last_upsample_step(carla, 12_000) == 10_000 and cur.last_upsample_step(carla, 9_999) == 0
    ends = {0: {"img_size": 8}, 6: {"img_size": 16}, 20: {}}
    assert [cur.last_upsample_step(ends, s) for s in (5, 6, 19, 20, 25)] == [0, 6, 6, 6, 6]   # past the end too
    assert cur.final_step(carla) == 200_000 and "batch_size" not in cur.extract_metadata(carla, 200_000)
    celeba = cur.extract_metadata(cur.get_curriculum("celeba"), 0)
    assert (celeba["batch_size"], celeba["num_steps"], celeba["img_size"], celeba["gen_lr"],
            celeba["disc_lr"]) == (56, 12, 64, 6e-5, 2e-4)
    assert (celeba["r1_lambda"], celeba["pos_lambda"], celeba["h_stddev"], celeba["v_stddev"]) == (0.2, 15, 0.3, 0.155)
    assert celeba["discriminator"] == "CCSEncoderDiscriminator" and celeba["eval_last_back"] is True
    cats = cur.extract_metadata(cur.get_curriculum("cats"), 0)
    assert (cats["batch_size"], cats["num_steps"], cats["batch_split"], cats["sample_dist"]) == (28, 24, 4, "uniform")
    assert cats["discriminator"] == "StridedDiscriminator"
    assert cur.get_current_step({"update_epochs": [2, 5]}, 3) == 1
    # Deep copies: editing one never changes the module's curricula.
    faces = cur.get_curriculum("faces")       # the demo on the embedded faces, longer at 32x32
    assert faces["dataset"] == "faces" and cur.final_step(faces) == 1200 and 600 not in faces
    assert cur.extract_metadata(faces, 700)["img_size"] == 32 and faces[0] == cur.get_curriculum("demo")[0]
    a = cur.get_curriculum("demo")
    a[0]["batch_size"] = 999
    assert cur.get_curriculum("demo")[0]["batch_size"] != 999
    with pytest.raises(ValueError, match="unknown curriculum 'nope'.*celeba"):
        cur.get_curriculum("nope")
    # The demo curriculum builds its (small) models and runs a generator pass.
    demo = cur.extract_metadata(cur.get_curriculum("demo"), 0)
    g = ImplicitGenerator3d(demo["model"], demo["latent_dim"], **demo)
    assert g.siren.hidden_dim == demo["hidden_dim"] == 32 and g.siren.mapping_network.network[0].out_features == 64
    pixels, pose = g(torch.randn(2, demo["latent_dim"]), **{**demo, "img_size": 4, "nerf_noise": 1.0})
    assert pixels.shape == (2, 3, 4, 4) and pose.shape == (2, 2)


def test_stage_helpers_have_one_meaning():
    c = {0: {"img_size": 8, "batch_size": 2, "num_steps": 4}, 10: {"img_size": 16, "batch_size": 2, "num_steps": 4},
         20: {}, "fov": 12}
    assert cur.stage_steps(c) == [0, 10, 20]               # every stage start, the end included
    assert cur.training_stages(c) == [0, 10]               # the stages that train
    assert cur.final_step(c) == 20 and cur.final_step({0: {"img_size": 8}}) == math.inf
    assert cur.stage_metadata(c, 25)["img_size"] == 16     # past the end the last stage stays in force
    assert cur.stage_metadata(c, 5)["img_size"] == 8 and cur.stage_metadata(c, 5)["fov"] == 12
    assert "img_size" not in cur.extract_metadata(c, 25)
    back = cur.from_json(cur.to_json({**c, "betas": (0, 0.9)}))
    assert back[10] == c[10] and back["betas"] == [0, 0.9] and cur.training_stages(back) == [0, 10]


def test_render_options_from_curriculum():
    demo = cur.get_curriculum("demo")
    o = RenderOptions.from_curriculum(demo)                # final resolution, evaluation settings
    assert (o.img_size, o.num_steps, o.fov, o.white_back, o.nerf_noise) == (32, 8, 12, True, 0.0)
    assert RenderOptions.from_curriculum(demo, step=0).img_size == 16
    assert RenderOptions.from_curriculum(demo, step=10_000).img_size == 32
    celeba = cur.get_curriculum("celeba")
    assert celeba["last_back"] is False and RenderOptions.from_curriculum(celeba).last_back is True
    assert RenderOptions.from_curriculum(celeba, evaluation=False).last_back is False
    json_keys = cur.from_json(cur.to_json(cur.get_curriculum("carla")))
    json_keys = {str(k): v for k, v in json_keys.items()}             # digit-string stage keys
    carla = RenderOptions.from_curriculum(json_keys, img_size=8, num_steps=None)
    assert (carla.img_size, carla.num_steps, carla.fov, carla.sample_dist) == (8, 48, 30, "spherical_uniform")
    assert (carla.pitch, carla.yaw) == (carla.v_mean, carla.h_mean)
    assert RenderOptions.from_curriculum(None) == RenderOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        RenderOptions().img_size = 3                                     # frozen: built once, shared


def test_render_options_drive_the_generator_like_keywords():
    torch.manual_seed(0)
    g = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8)
    z = torch.randn(2, 8)
    o = RenderOptions(img_size=4, num_steps=3, white_back=True, hierarchical_sample=False)
    a = g.render(z, pitch=1.5, yaw=1.6, options=o, jitter=False)["pixels"]
    b = g.render(z, pitch=1.5, yaw=1.6, img_size=4, num_steps=3, white_back=True, hierarchical_sample=False,
                 jitter=False)["pixels"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = g.render(z, pitch=1.5, yaw=1.6, options=o, img_size=5, jitter=False)["pixels"]   # keyword wins
    assert c.shape == (2, 3, 5, 5)
