"""scripts/distill_faces.py: the analytic head field it regresses on, and a short run end to end."""
import importlib.util
import math
from pathlib import Path

import torch

from pigan.checkpoints import load_generator

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "distill_faces.py"
_spec = importlib.util.spec_from_file_location("distill_faces", _PATH)
distill = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(distill)


def test_head_field_is_the_dataset_head():
    z = torch.zeros(1, 16)
    params = distill.head_params(z, radius=0.09)
    a = params["axes"][0]
    eye = torch.tensor([-0.36, 0.3, 0.88])
    eye = eye / eye.norm() * torch.as_tensor(a, dtype=torch.float32)        # on the surface, at an eye
    x = torch.stack([torch.zeros(3), torch.tensor([0.0, 0.0, 0.2]), eye * 0.999,
                     torch.tensor([0.0, 0.0, a[2] * 0.999], dtype=torch.float32)])[None]
    sigma, rgb = distill.head_field(params, x)
    assert sigma[0, 0] == 1 and sigma[0, 1] == -1 and -1 < sigma[0, 2] < 1     # inside, outside, surface
    feat, skin = torch.as_tensor(params["color3"][0]), torch.as_tensor(params["color1"][0])
    # the eye is drawn in the feature colour and the tip of the nose in the skin colour (both lit)
    assert torch.allclose(rgb[0, 2] / rgb[0, 2].max(), (feat / feat.max()).float(), atol=0.05)
    assert torch.allclose(rgb[0, 3] / rgb[0, 3].max(), (skin / skin.max()).float(), atol=0.05)


def test_short_run_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "g.pt"
    assert distill.main(["--out", str(out), "--steps", "3", "--batch", "2", "--points", "64",
                         "--hidden-dim", "16", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "step 3/3" in text and "PSNR of renders" in text
    g = load_generator(out)
    assert g.siren.hidden_dim == 16 and type(g.siren).__name__ == "SPATIALSIRENBASELINE"
    psnrs = [float(v) for v in text.split("32x32): ")[1].split()[:8]]
    assert len(psnrs) == 8 and all(math.isfinite(v) for v in psnrs)
