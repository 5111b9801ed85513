"""Scalar logs (CSV always, TensorBoard when installed) and line plots that always produce a PNG."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path


class ScalarLogger:
    """Appends rows of scalars to ``<folder>/log.csv`` (header from the first row written, widened
    when a row brings new names) and mirrors them to TensorBoard event files under ``<folder>/tb`` when tensorboard is
    importable. Resuming appends to the same CSV."""

    def __init__(self, folder, tensorboard: bool = True):
        self.folder = Path(folder)
        self.path = self.folder / "log.csv"
        self.fields = None
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as f:
                self.fields = next(csv.reader(f), None)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.folder / "tb"))
            except Exception:          # tensorboard not installed: CSV only
                self.tb = None

    def log(self, step: int, **scalars):
        row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        elif any(k not in self.fields for k in row):
            # A new column (e.g. evaluation metrics logged every k steps): rewrite with a wider header.
            rows = read_csv(self.path)
            self.fields += [k for k in row if k not in self.fields]
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, float(v), int(step))

    def truncate_after(self, step: int):
        """Drop rows logged after ``step`` (a resumed run replays the steps after its checkpoint)."""
        rows = read_csv(self.path)
        if not rows:
            return
        keep = [r for r in rows if int(float(r["step"])) <= step]
        if len(keep) == len(rows):
            return
        self._rewrite(keep)

    def _rewrite(self, rows):
        """Replace the CSV with ``rows`` under the current header, atomically."""
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)

    def close(self):
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def read_csv(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _smooth(values, window):
    if window <= 1 or len(values) < 3:
        return values
    out, acc, q = [], 0.0, []
    for v in values:
        q.append(v)
        acc += v
        if len(q) > window:
            acc -= q.pop(0)
        out.append(acc / len(q))
    return out


def plot_curves(series: dict[str, tuple[list, list]], path, title: str = "", xlabel: str = "step",
                smooth: int = 1, logy: bool = False):
    """Line plot of ``{name: (xs, ys)}`` to a PNG: matplotlib when installed, else drawn with Pillow."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    series = {k: (list(map(float, xs)), _smooth([float(y) for y in ys], smooth))
              for k, (xs, ys) in series.items() if len(xs)}
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return _plot_pillow(series, path, title, xlabel, logy)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=name, linewidth=1.2)
    ax.set_xlabel(xlabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _plot_pillow(series, path, title, xlabel, logy):
    from PIL import Image, ImageDraw

    W, H, L, R, T, B = 800, 450, 70, 20, 30, 50
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    tf = (lambda y: math.log10(max(y, 1e-12))) if logy else (lambda y: y)
    pts = [(x, tf(y)) for xs, ys in series.values() for x, y in zip(xs, ys) if math.isfinite(y)]
    if pts:
        x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
        y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    else:
        x0, x1, y0, y1 = 0.0, 1.0, 0.0, 1.0
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad
    sx = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)
    sy = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)
    d.rectangle([L, T, W - R, H - B], outline=(0, 0, 0))
    for i in range(5):                      # ticks and grid
        fx = x0 + (x1 - x0) * i / 4
        fy = y0 + (y1 - y0) * i / 4
        d.line([sx(fx), T, sx(fx), H - B], fill=(225, 225, 225))
        d.line([L, sy(fy), W - R, sy(fy)], fill=(225, 225, 225))
        d.text((sx(fx) - 12, H - B + 5), _fmt(fx), fill=(0, 0, 0))
        d.text((5, sy(fy) - 6), _fmt(10 ** fy if logy else fy), fill=(0, 0, 0))
    d.text((W // 2 - 20, H - 20), xlabel, fill=(0, 0, 0))
    d.text((L, 8), title, fill=(0, 0, 0))
    for k, (name, (xs, ys)) in enumerate(series.items()):
        color = _COLORS[k % len(_COLORS)]
        line = [(sx(x), sy(tf(y))) for x, y in zip(xs, ys) if math.isfinite(y)]
        if len(line) > 1:
            d.line(line, fill=color, width=2)
        elif line:
            d.ellipse([line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2], fill=color)
        d.line([W - R - 150, T + 12 + 16 * k, W - R - 130, T + 12 + 16 * k], fill=color, width=3)
        d.text((W - R - 125, T + 6 + 16 * k), name, fill=(0, 0, 0))
    img.save(path)
    return path


def plot_loss_csv(csv_path, png_path, keys=("d_loss", "g_loss"), smooth: int | None = None):
    """Loss plot of a training log (``log.csv``) as PNG; an empty log still gives a (blank) plot.
    ``smooth``: moving-average window in rows (default: 1/50 of the rows)."""
    rows = read_csv(csv_path)
    if smooth is None:
        smooth = max(1, len(rows) // 50)
    series = {}
    for k in keys:
        xs = [float(r["step"]) for r in rows if r.get(k) not in (None, "")]
        ys = [float(r[k]) for r in rows if r.get(k) not in (None, "")]
        series[k] = (xs, ys)
    return plot_curves(series, png_path, title="training losses", smooth=smooth)
