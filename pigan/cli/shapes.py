"""``pigan shapes CHECKPOINT --out DIR``: density volumes (.mrc) and coloured meshes (.ply, .obj)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pigan import shapes
from pigan.checkpoints import load_for_render
from pigan.cli import EXIT_CODES_HELP, ArgumentParser, add_generator_args, run_command
from pigan.common import (EXIT_FAILED, UsageError, check_number, check_output_dir, check_positive, pick_device,
                          writing)


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="pigan shapes", description=(
        "Sample a generator's density on an N^3 grid and write it as .mrc, and as a coloured mesh "
        "(.ply; .obj and a PNG preview on request) by marching cubes."),
        epilog=EXIT_CODES_HELP.replace("(e.g. none of the input images could be read)",
                                       "(a seed's density does not cross the level; its .mrc is written)"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="checkpoint of ours, or pi-GAN's folder / generator.pth")
    ap.add_argument("--out", required=True, help="output folder")
    add_generator_args(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="latent seeds (default 0)")
    ap.add_argument("--resolution", type=int, default=256, help="grid points per axis (default 256)")
    ap.add_argument("--cube-size", type=float, default=0.3, help="side of the sampled cube, world units "
                    "(default 0.3, pi-GAN's)")
    ap.add_argument("--psi", type=float, default=0.5, help="truncation (default 0.5, pi-GAN's)")
    ap.add_argument("--level", type=float, default=None, help="iso-level on raw sigma (default: the "
                    f"curriculum's shape_level, else {shapes.DEMO_LEVEL:g} for the demo dataset, "
                    f"else {shapes.DEFAULT_LEVEL:g})")
    ap.add_argument("--chunk-size", type=int, default=65536, help="points per siren call")
    ap.add_argument("--no-mesh", action="store_true", help="write only the .mrc volume")
    ap.add_argument("--obj", action="store_true", help="also write .obj meshes")
    ap.add_argument("--preview", action="store_true", help="also write a shaded PNG of each mesh")
    return ap


def check_args(args) -> None:
    """The values argparse cannot check, before any work."""
    check_number("--resolution", args.resolution, lo=2)
    check_number("--cube-size", args.cube_size, lo=0, lo_open=True)
    check_positive("--chunk-size", args.chunk_size)
    check_number("--psi", args.psi, lo=0, hi=1)


def _write_mesh(generator, z, verts, faces, out: Path, seed: int, args) -> list[Path]:
    """The coloured mesh of one seed as .ply (and .obj, .png on request)."""
    colors = shapes.field_colors(generator, z, verts, psi=args.psi, chunk_size=args.chunk_size)
    writers = [(".ply", shapes.write_ply, True), (".obj", shapes.write_obj, args.obj),
               (".png", shapes.render_mesh_png, args.preview)]
    paths = []
    for suffix, write, wanted in writers:
        if wanted:
            path = out / f"seed{seed}{suffix}"
            with writing(path):
                paths.append(write(verts, faces, path, colors))
    return paths


def _main(argv) -> int:
    args = build_parser().parse_checked(argv, check_args)
    shapes.require_writers(mesh=not args.no_mesh)
    if not Path(args.checkpoint).exists():
        raise UsageError(f"checkpoint {args.checkpoint!r} does not exist")
    device = pick_device(args.device)
    generator, config = load_for_render(args.checkpoint, device, use_ema=not args.no_ema)
    level = args.level if args.level is not None else shapes.default_level(config)
    out = check_output_dir(args.out)
    status = 0
    for seed in args.seeds:
        z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        sigma = shapes.density_grid(generator, z, args.resolution, args.cube_size, psi=args.psi,
                                    chunk_size=args.chunk_size, progress=not args.no_progress)
        with writing(out / f"seed{seed}.mrc"):
            paths = [shapes.write_mrc(sigma, out / f"seed{seed}.mrc", args.cube_size)]
        line = f"seed {seed}: sigma in [{sigma.min():.3g}, {sigma.max():.3g}]"
        if not args.no_mesh:
            try:
                verts, faces = shapes.extract_mesh(sigma, level, args.cube_size)
            except ValueError as exc:
                print(f"pigan shapes: seed {seed}: no mesh: {exc}", file=sys.stderr)
                status = EXIT_FAILED
            else:
                paths += _write_mesh(generator, z, verts, faces, out, seed, args)
                line += f", level {level:g}: {len(verts)} vertices, {len(faces)} faces"
        print(line)
        for p in paths:
            print(f"  {p}")
    return status


def main(argv=None) -> int:
    return run_command("pigan shapes", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
