"""A second, independent sequence generator: how a model does on sequences it was not made for.

Issue 9's default model will also be scored on held-out sequences "made from other photos by
another generator". The synthetic eval split (``edgetrack synth --split eval``) already keeps
its photos out of training, but it comes from the generator the model was trained on. This
script draws sequences with a generator written apart from ``edgetrack.synth``, on the eval
split's photos only (never the train split's, never the ``edgetrack data`` library, never
``mate-backgrounds``), so that a score here says what the generator's own habits were worth.

What differs from ``edgetrack.synth``, on purpose:

- frames of 480x360 (the eval split: 640x480), JPEG quality 80, sensor noise;
- the camera: a viewport gliding and zooming over a photo along sums of sinusoids, not
  piecewise moves;
- the target: a region of another photo (the most textured of five draws) inside a superellipse (exponent 1.5-5, any aspect,
  turned by a fixed angle), its edge feathered; it moves along its own sinusoids and breathes
  in size (0.6-1.7 times) and aspect over the sequence, with no events;
- light: a slow global gain and colour cast;
- one occluder: a strip cut from a third photo that crosses the frame once and covers part of
  the target for a while (never more than its own height, so the target stays in view).

Ground truth: the bounding box of the rendered target's alpha above 0.5, in frame pixels
(clipped to the frame), where the occluder is not counted: the box is the object's, hidden
part included (LaSOT's rule). Layout: ``edgetrack synth``'s folder layout (``<seq>/img``,
``groundtruth.txt``, ``list.txt``), so ``edgetrack eval --dataset folder:DIR`` reads it.

    python benchmarks/shift_set.py --out /work/data/shift30 --sequences 30 --seed 0
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgetrack.synth.photos import EVAL_PHOTOS, load_photo  # noqa: E402

log = logging.getLogger("shift_set")
W, H = 480, 360


def wave(rng: np.random.Generator, n: int, amp: float, periods: tuple[float, float] = (60, 300), k: int = 3) -> np.ndarray:
    """A smooth random signal of ``n`` frames: ``k`` sinusoids, amplitudes summing to ``amp``."""
    t = np.arange(n)
    out = np.zeros(n)
    weights = rng.dirichlet(np.ones(k)) * amp
    for a in weights:
        p = rng.uniform(*periods)
        out += a * np.sin(2 * np.pi * t / p + rng.uniform(0, 2 * np.pi))
    return out


def superellipse(w: int, h: int, power: float, feather: float) -> np.ndarray:
    """Alpha (h, w) float32 of ``|x|^p + |y|^p <= 1``, its edge blurred by ``feather`` px."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (x + 0.5) / w * 2 - 1
    y = (y + 0.5) / h * 2 - 1
    a = ((np.abs(x) ** power + np.abs(y) ** power) <= 1).astype(np.float32)
    return cv2.GaussianBlur(a, (0, 0), feather) if feather > 0 else a


def _region(rng: np.random.Generator, photo: np.ndarray, w: int, h: int) -> np.ndarray:
    """A random ``w`` x ``h`` region of ``photo`` (scaled up first when the photo is too small)."""
    ph, pw = photo.shape[:2]
    s = max(1.0, (w + 2) / pw, (h + 2) / ph) * rng.uniform(1.0, 1.6)
    if s != 1.0:
        photo = cv2.resize(photo, (math.ceil(pw * s), math.ceil(ph * s)), interpolation=cv2.INTER_LINEAR)
        ph, pw = photo.shape[:2]
    x = int(rng.integers(0, pw - w + 1))
    y = int(rng.integers(0, ph - h + 1))
    return photo[y:y + h, x:x + w].astype(np.float32)


def draw_sequence(seed: int, frames: int = 200) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """One sequence: RGB uint8 frames (H, W, 3) and boxes (frames, 4) x, y, w, h."""
    rng = np.random.default_rng([seed, 2026])
    names = list(rng.choice(EVAL_PHOTOS, size=3, replace=False))
    bg_photo, tgt_photo, occ_photo = (load_photo(n) for n in names)

    # camera: viewport centre and zoom over a background scaled to about twice the frame
    bg = bg_photo.astype(np.float32)
    scale_bg = max(2.0 * W / bg.shape[1], 2.0 * H / bg.shape[0])
    bg = cv2.resize(bg, (math.ceil(bg.shape[1] * scale_bg), math.ceil(bg.shape[0] * scale_bg)))
    bh, bw = bg.shape[:2]
    zoom = 1.0 + wave(rng, frames, 0.15)  # frame pixels per background pixel
    cam_x = bw / 2 + wave(rng, frames, bw * 0.2)
    cam_y = bh / 2 + wave(rng, frames, bh * 0.2)

    # the target: a superellipse region of another photo, turned by a fixed angle
    side = rng.uniform(40, 110)
    aspect = math.exp(rng.uniform(-0.7, 0.7))
    tw, th = int(side * math.sqrt(aspect)), int(side / math.sqrt(aspect))
    angle = rng.uniform(-30, 30)
    alpha = superellipse(tw, th, rng.uniform(1.5, 5.0), feather=1.2)
    tex = max((_region(rng, tgt_photo, tw, th) for _ in range(5)), key=lambda r: float(r.std()))  # not a flat patch
    tex *= rng.uniform(0.8, 1.2, 3)  # its own colour balance against the background
    size = np.exp(wave(rng, frames, 0.5, (80, 400)))  # 0.6-1.65 times
    stretch = np.exp(wave(rng, frames, 0.2, (80, 300)))
    tx = W / 2 + wave(rng, frames, W * 0.3, (50, 250))
    ty = H / 2 + wave(rng, frames, H * 0.3, (50, 250))
    gain = 1.0 + wave(rng, frames, 0.25, (100, 400))
    cast = 1.0 + rng.uniform(-0.08, 0.08, 3)

    # one occluder strip crossing the frame during frames [t0, t0 + dur)
    occ_h = int(rng.uniform(0.3, 0.6) * side)
    occ_w = int(W * rng.uniform(0.3, 0.5))
    occ = _region(rng, occ_photo, occ_w, occ_h)
    dur = int(rng.integers(30, 60))
    t0 = int(rng.integers(20, frames - dur - 1))

    out_frames, boxes = [], np.zeros((frames, 4))
    for t in range(frames):
        # background through the camera: frame = zoom * (bg - cam) + centre
        z = zoom[t]
        cam = np.float32([[z, 0, W / 2 - z * cam_x[t]], [0, z, H / 2 - z * cam_y[t]]])
        frame = cv2.warpAffine(bg, cam, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # target: scaled (size, stretch), turned, placed at (tx, ty) in frame pixels
        sx = size[t] * math.sqrt(stretch[t])
        sy = size[t] / math.sqrt(stretch[t])
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        a = np.float32([[c * sx, -s * sy], [s * sx, c * sy]])
        centre = np.float32([tw / 2, th / 2])
        m = np.hstack([a, (np.float32([tx[t], ty[t]]) - a @ centre)[:, None]])
        al = cv2.warpAffine(alpha, m, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
        tx_img = cv2.warpAffine(tex, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        frame = frame * (1 - al[..., None]) + tx_img * al[..., None]
        ys, xs = np.nonzero(al > 0.5)
        boxes[t] = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) if len(xs) else 0
        # occluder: slides from left to right across the target's row
        if t0 <= t < t0 + dur:
            f = (t - t0) / dur
            ox = int(-occ_w + f * (W + occ_w))
            oy = int(np.clip(ty[t] - occ_h / 2 + rng.uniform(-0.2, 0.2) * occ_h, 0, H - occ_h))
            x0, x1 = max(0, ox), min(W, ox + occ_w)
            if x1 > x0:
                frame[oy:oy + occ_h, x0:x1] = occ[:, x0 - ox:x1 - ox]
        frame = frame * gain[t] * cast + rng.normal(0, 3.0, frame.shape)
        out_frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    meta = {"generator": "benchmarks/shift_set.py", "seed": seed, "photos": {"background": names[0],
            "target": names[1], "occluder": names[2]}, "occluded_frames": [t0, t0 + dur]}
    return out_frames, boxes, meta


def write_set(out: Path, sequences: int, seed: int, frames: int) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(sequences):
        name = f"shift-{i + 1:04d}"
        final = out / name
        if (final / "groundtruth.txt").is_file():
            names.append(name)
            continue
        imgs, boxes, meta = draw_sequence(seed * 100000 + i, frames)
        tmp = out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "img").mkdir(parents=True)
        for k, im in enumerate(imgs):
            cv2.imwrite(str(tmp / "img" / f"{k + 1:08d}.jpg"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 80])
        (tmp / "groundtruth.txt").write_text("".join(f"{x:.2f},{y:.2f},{w:.2f},{h:.2f}\n" for x, y, w, h in boxes))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        tmp.rename(final)
        names.append(name)
        log.info("%s (%d/%d)", name, i + 1, sequences)
    (out / "list.txt").write_text("".join(n + "\n" for n in names))
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sequences", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=200)
    a = ap.parse_args(argv)
    if a.sequences < 1 or a.frames < 100:
        ap.error("--sequences must be >= 1 and --frames >= 100")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    write_set(a.out, a.sequences, a.seed, a.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
