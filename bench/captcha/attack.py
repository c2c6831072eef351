#!/usr/bin/env python3
"""Off-the-shelf attacks on a set of captchas with known answers; prints solve rates.

    attack.py DIR [--attacks a,b,...] [--limit N]

DIR holds NNNN.png, answers.tsv (file<TAB>text) and generator.json (alphabet, fonts and the
glyph scale/rotation/shear ranges), as written by
`cargo run -p verifications-svc --example captchas -- DIR 500`. `bench/captcha/run.sh` does the
whole thing (setup, fresh captchas, this script). A measurement tool, not a test.

The attacks are what a solver service or a weekend script tries first, with no training data:

  colour+template     exact-colour clustering: the most frequent exact colours in the text band
                      are taken as glyphs (one mask each, a 3x3 opening removes thin strokes),
                      each mask matched against templates of the vendored fonts rendered under
                      the generator's own scale/rotation/shear ranges (best IoU wins)
  kmeans+template     the same, but the text-band pixels are clustered by colour and x position
                      (k-means, k = 4), which survives colours that vary a little per glyph
  threshold+template  darkness threshold, 3x3 opening, connected components merged/split to 4
                      by position, then template matching
  sliding-template    no segmentation: templates slide along the opened text mask, the best
                      chain of four matches left to right wins (for touching glyphs)
  colour+tesseract    exact-colour segmentation, each glyph read by tesseract --psm 10
  tesseract-line      the whole image: grey or thresholded (several levels), median 3, upscale x3,
                      tesseract --psm 7 and --psm 8, alphabet whitelist; the best configuration
                      over the set is reported (an attacker picks it on a few labelled samples)

Per-character rate: characters right in the right position. Whole: all four right.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CANVAS = 48  # templates and glyphs are compared on a CANVAS x CANVAS grid, centred on the centroid


# --- the data set ---------------------------------------------------------------------------


def load_set(folder, limit):
    meta = json.loads((folder / "generator.json").read_text())
    rows = []
    for line in (folder / "answers.tsv").read_text().splitlines():
        name, text = line.split("\t")
        rows.append((np.asarray(Image.open(folder / name).convert("RGB")), text))
    return meta, rows[:limit] if limit else rows


# --- binary morphology and components on numpy masks ----------------------------------------


def _shifts(mask, combine):
    padded = np.pad(mask, 1, constant_values=False)
    h, w = mask.shape
    out = padded[1 : h + 1, 1 : w + 1].copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out = combine(out, padded[1 + dy : h + 1 + dy, 1 + dx : w + 1 + dx])
    return out


def opening(mask):
    """3x3 erosion then dilation: removes strokes up to 2 px thick, keeps bold glyph strokes."""
    return _shifts(_shifts(mask, np.logical_and), np.logical_or)


def components(mask, min_size=12):
    """8-connected components larger than min_size, as masks."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        queue, pixels = deque([(y, x)]), []
        seen[y, x] = True
        while queue:
            cy, cx = queue.popleft()
            pixels.append((cy, cx))
            for ny in (cy - 1, cy, cy + 1):
                for nx in (cx - 1, cx, cx + 1):
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        if len(pixels) >= min_size:
            part = np.zeros_like(mask, dtype=bool)
            ys, xs = zip(*pixels)
            part[list(ys), list(xs)] = True
            found.append(part)
    return found


def centre_x(mask):
    return float(np.nonzero(mask)[1].mean())


def to_four(parts, length):
    """Merge the closest pair or split the widest part until there are `length`, left to right."""
    parts = sorted((p for p in parts if p.any()), key=centre_x)
    while len(parts) > length:
        xs = [centre_x(p) for p in parts]
        i = int(np.argmin(np.diff(xs)))
        parts[i : i + 2] = [parts[i] | parts[i + 1]]
    while 0 < len(parts) < length:
        widths = [np.ptp(np.nonzero(p)[1]) for p in parts]
        i = int(np.argmax(widths))
        if widths[i] < 2:
            break
        cols = np.nonzero(parts[i])[1]
        lo, hi = cols.min(), cols.max()
        # cut at the thinnest column in the middle half
        profile = parts[i].sum(axis=0)
        a, b = lo + (hi - lo) // 4, hi - (hi - lo) // 4
        cut = a + int(np.argmin(profile[a : b + 1])) if b > a else (lo + hi) // 2
        cut = max(lo + 1, min(hi, cut))
        left, right = parts[i].copy(), parts[i].copy()
        left[:, cut:] = False
        right[:, :cut] = False
        parts[i : i + 1] = [left, right]
    return parts


# --- segmenters: image -> `length` glyph masks, left to right -------------------------------


def text_band_mask(img, band):
    lo, hi = band
    return np.all((img >= lo) & (img <= hi), axis=2)


def seg_exact_colour(img, meta):
    """The most frequent exact colours in the text band, each far from the ones before it, are the
    glyphs; each glyph is the pixels within a few levels of its colour."""
    band = text_band_mask(img, meta["text_band"])
    packed = (img[..., 0].astype(np.int32) << 16) | (img[..., 1].astype(np.int32) << 8) | img[..., 2]
    colours, counts = np.unique(packed[band], return_counts=True)
    chosen = []
    for c in colours[np.argsort(counts)[::-1][:40]]:
        rgb = np.array([(c >> 16) & 255, (c >> 8) & 255, c & 255])
        if all(np.max(np.abs(rgb - o)) > 12 for o in chosen):
            chosen.append(rgb)
        if len(chosen) == meta["length"]:
            break
    background = most_frequent_colour(img)
    masks = np.stack([blend_mask(img, background, rgb) for rgb in chosen])
    # a pixel in two masks belongs to the nearer colour
    distance = np.stack([np.max(np.abs(img.astype(np.int16) - rgb), axis=2) for rgb in chosen])
    distance = np.where(masks, distance, 1 << 20)
    nearest = np.argmin(distance, axis=0)
    parts = [opening(masks[i] & (nearest == i)) for i in range(len(chosen))]
    return to_four([p for p in parts if p.sum() >= 12], meta["length"])


def most_frequent_colour(img):
    packed = (img[..., 0].astype(np.int32) << 16) | (img[..., 1].astype(np.int32) << 8) | img[..., 2]
    colours, counts = np.unique(packed, return_counts=True)
    c = colours[np.argmax(counts)]
    return np.array([(c >> 16) & 255, (c >> 8) & 255, c & 255], dtype=np.float32)


def blend_mask(img, background, ink, tolerance=18.0):
    """Pixels that are `ink` blended over `background` at 50% or more (anti-aliased edges
    included), i.e. close to the segment between the two colours and nearer the ink."""
    d = ink.astype(np.float32) - background
    rel = img.astype(np.float32) - background
    a = (rel @ d) / max(float(d @ d), 1.0)
    residual = np.linalg.norm(rel - a[..., None] * d, axis=2)
    return (a >= 0.5) & (a <= 1.15) & (residual <= tolerance)


def seg_kmeans(img, meta, iterations=12):
    band = text_band_mask(img, meta["text_band"])
    ys, xs = np.nonzero(band)
    if len(xs) < meta["length"]:
        return []
    feats = np.column_stack([img[ys, xs].astype(np.float32), xs.astype(np.float32) * 2.0])
    k = meta["length"]
    edges = np.quantile(xs, np.linspace(0, 1, k + 1))
    edges[-1] += 1
    centres = np.array([feats[(xs >= edges[i]) & (xs < edges[i + 1])].mean(axis=0) for i in range(k)])
    for _ in range(iterations):
        labels = np.argmin(((feats[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        for i in range(k):
            if (labels == i).any():
                centres[i] = feats[labels == i].mean(axis=0)
    parts = []
    for i in range(k):
        part = np.zeros(band.shape, dtype=bool)
        part[ys[labels == i], xs[labels == i]] = True
        opened = opening(part)
        parts.append(opened if opened.sum() >= 12 else part)
    return to_four(parts, k)


def seg_threshold(img, meta):
    dark = opening(text_band_mask(img, meta["text_band"]))
    return to_four(components(dark), meta["length"])


# --- template matching ---------------------------------------------------------------------


def place(mask):
    """Crop `mask` to its box and paste it onto a CANVAS grid with its centroid in the middle."""
    ys, xs = np.nonzero(mask)
    out = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    if len(xs) == 0:
        return out
    cy, cx = int(round(ys.mean())), int(round(xs.mean()))
    ty, tx = ys - cy + CANVAS // 2, xs - cx + CANVAS // 2
    keep = (ty >= 0) & (ty < CANVAS) & (tx >= 0) & (tx < CANVAS)
    out[ty[keep], tx[keep]] = 1.0
    return out


def render_glyph(font, char, angle, shear):
    """`char` in `font`, sheared then rotated like the generator's blit; coverage > 50% as a mask."""
    size = 96
    layer = Image.new("L", (size, size), 0)
    ImageDraw.Draw(layer).text((size // 2, size // 2), char, font=font, fill=255, anchor="mm")
    # forward map (about the centre): R(angle) * [[1, shear], [0, 1]]; PIL wants the inverse
    c, s = np.cos(angle), np.sin(angle)
    fwd = np.array([[c, c * shear - s], [s, s * shear + c]])
    inv = np.linalg.inv(fwd)
    centre = np.array([size / 2, size / 2])
    offset = centre - inv @ centre
    layer = layer.transform(
        (size, size),
        Image.Transform.AFFINE,
        (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1]),
        resample=Image.Resampling.BILINEAR,
    )
    return np.asarray(layer) > 127


class Templates:
    """Every alphabet character in every font, at sizes, rotations and shears spanning the
    generator's own ranges."""

    def __init__(self, meta, scales=4, angles=9, shears=3):
        self.labels, grids = [], []
        for path in meta["fonts"]:
            # ab_glyph's PxScale is the ascent-to-descent height; PIL's size is the em: convert.
            probe = ImageFont.truetype(path, 100)
            ascent, descent = probe.getmetrics()
            em_per_px = 100.0 / (ascent + descent)
            for scale in np.linspace(*meta["scale"], scales):
                font = ImageFont.truetype(path, max(1, round(meta["base_px"] * scale * em_per_px)))
                for angle in np.linspace(*meta["angle"], angles):
                    for shear in np.linspace(*meta["shear"], shears):
                        for char in meta["alphabet"]:
                            grids.append(place(render_glyph(font, char, angle, shear)).ravel())
                            self.labels.append(char)
        self.matrix = np.stack(grids)
        self.sizes = self.matrix.sum(axis=1)

    def classify(self, mask):
        grid = place(mask)
        shifted = np.stack(
            [np.roll(np.roll(grid, dy, 0), dx, 1).ravel() for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        )
        inter = self.matrix @ shifted.T
        union = self.sizes[:, None] + shifted.sum(axis=1)[None, :] - inter
        iou = (inter / np.maximum(union, 1)).max(axis=1)
        return self.labels[int(np.argmax(iou))]


# --- tesseract -----------------------------------------------------------------------------


def tesseract_batch(images, psm, alphabet, work):
    """Read every PIL image with as few tesseract processes as possible (an image list file);
    one string each. Tesseract 5.3 dies (SIGFPE) on the odd image: that batch is halved until
    the culprit reads as nothing."""
    paths = []
    for i, im in enumerate(images):
        p = work / f"t{i:05d}.png"
        im.save(p)
        paths.append(str(p))
    try:
        return _tesseract_paths(paths, psm, alphabet, work)
    finally:
        for p in paths:
            os.unlink(p)


def _tesseract_paths(paths, psm, alphabet, work):
    listing = work / "list.txt"
    listing.write_text("\n".join(paths) + "\n")
    run = subprocess.run(
        ["tesseract", str(listing), "stdout", "--psm", str(psm), "-c", f"tessedit_char_whitelist={alphabet}"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    )
    pages = run.stdout.split("\f")[: len(paths)]
    if run.returncode == 0 and len(pages) == len(paths):
        return ["".join(ch for ch in page if ch in alphabet) for page in pages]
    if len(paths) == 1:
        return [""]
    half = len(paths) // 2
    return _tesseract_paths(paths[:half], psm, alphabet, work) + _tesseract_paths(paths[half:], psm, alphabet, work)


def preprocess(img, threshold):
    grey = Image.fromarray(img).convert("L")
    grey = grey.resize((grey.width * 3, grey.height * 3), Image.Resampling.LANCZOS)
    grey = grey.filter(ImageFilter.MedianFilter(3))
    if threshold is not None:
        grey = grey.point(lambda v: 0 if v < threshold else 255)
    return Image.fromarray(np.pad(np.asarray(grey), 20, constant_values=255))


def glyph_image(mask):
    grid = place(mask)
    im = Image.fromarray(np.where(grid > 0, 0, 255).astype(np.uint8))
    im = im.resize((CANVAS * 3, CANVAS * 3), Image.Resampling.NEAREST)
    return im.filter(ImageFilter.MedianFilter(3))


# --- attacks: rows -> list of guessed strings ----------------------------------------------


def segment_and_match(segmenter):
    def attack(meta, rows, templates, work):
        guesses = []
        for img, _ in rows:
            parts = segmenter(img, meta)
            guesses.append("".join(templates.classify(p) for p in parts))
        return guesses, None

    return attack


def colour_tesseract(meta, rows, templates, work):
    glyphs, owners = [], []
    for n, (img, _) in enumerate(rows):
        for p in seg_exact_colour(img, meta):
            glyphs.append(glyph_image(p))
            owners.append(n)
    reads = tesseract_batch(glyphs, 10, meta["alphabet"], work)
    guesses = [""] * len(rows)
    for n, text in zip(owners, reads):
        guesses[n] += (text or "?")[:1]
    return guesses, None


def tesseract_line(meta, rows, templates, work):
    best, detail = None, []
    for threshold in (None, 100, 130, 160):
        prepared = [preprocess(img, threshold) for img, _ in rows]
        for psm in (7, 8):
            guesses = tesseract_batch(prepared, psm, meta["alphabet"], work)
            score = score_of(guesses, rows)
            detail.append((f"threshold {threshold or 'none'}, psm {psm}", score))
            if best is None or score[1] > best[1][1] or (score[1] == best[1][1] and score[0] > best[1][0]):
                best = (guesses, score)
    return best[0], detail


def sliding_template(meta, rows, templates, work):
    """No segmentation at all (what touching glyphs call for): every template slides along the
    dark, opened text mask; the best left-to-right chain of `length` matches, at least `min_gap`
    px apart, is the answer. Uses the coarser template set (2 sizes, 5 rotations, no shear)."""
    coarse = Templates(meta, scales=2, angles=5, shears=1)
    k, min_gap, guesses = meta["length"], 9, []
    half = CANVAS // 2
    for img, _ in rows:
        dark = np.pad(opening(text_band_mask(img, meta["text_band"])), half).astype(np.float32)
        h, w = img.shape[:2]
        xs, ys = list(range(0, w, 2)), list(range(h // 2 - 4, h // 2 + 5, 4))
        windows = np.stack([dark[y : y + CANVAS, x : x + CANVAS].ravel() for x in xs for y in ys])
        inter = windows @ coarse.matrix.T
        union = windows.sum(axis=1)[:, None] + coarse.sizes[None, :] - inter
        iou = inter / np.maximum(union, 1)
        best_t = iou.argmax(axis=1)
        best = iou.max(axis=1).reshape(len(xs), len(ys))
        at_x = best.max(axis=1)
        label_at = [coarse.labels[best_t[i * len(ys) + int(best[i].argmax())]] for i in range(len(xs))]
        guesses.append(best_chain(xs, at_x, label_at, k, min_gap))
    return guesses, None


def best_chain(xs, score, labels, k, min_gap):
    """The `k` positions, left to right and at least `min_gap` apart, with the largest total score."""
    n = len(xs)
    table = np.full((k + 1, n), -np.inf)
    back = np.zeros((k + 1, n), dtype=int)
    table[1] = score
    for j in range(2, k + 1):
        for i in range(n):
            earlier = [p for p in range(i) if xs[i] - xs[p] >= min_gap]
            if earlier:
                p = max(earlier, key=lambda q: table[j - 1, q])
                table[j, i], back[j, i] = table[j - 1, p] + score[i], p
    i = int(np.argmax(table[k]))
    if not np.isfinite(table[k, i]):
        return ""
    chain = [i]
    for j in range(k, 1, -1):
        chain.append(back[j, chain[-1]])
    return "".join(labels[c] for c in reversed(chain))


ATTACKS = {
    "colour+template": segment_and_match(seg_exact_colour),
    "kmeans+template": segment_and_match(seg_kmeans),
    "threshold+template": segment_and_match(seg_threshold),
    "sliding-template": sliding_template,
    "colour+tesseract": colour_tesseract,
    "tesseract-line": tesseract_line,
}


def score_of(guesses, rows):
    chars = whole = 0
    for guess, (_, text) in zip(guesses, rows):
        chars += sum(1 for a, b in zip(guess, text) if a == b)
        whole += guess == text
    return chars / (len(rows) * len(rows[0][1])), whole / len(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    meta, rows = load_set(args.folder, args.limit)
    templates = Templates(meta)
    print(f"{len(rows)} captchas, {len(templates.labels)} templates from {len(meta['fonts'])} font(s)", file=sys.stderr)
    print(f"| attack | characters | whole captchas |\n|---|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="captcha-attack.") as work:
        for name in args.attacks.split(","):
            guesses, detail = ATTACKS[name](meta, rows, templates, Path(work))
            chars, whole = score_of(guesses, rows)
            print(f"| {name} | {chars:.1%} | {whole:.1%} ({round(whole * len(rows))}/{len(rows)}) |", flush=True)
            for label, (c, w) in detail or []:
                print(f"|   {name}: {label} | {c:.1%} | {w:.1%} |", flush=True)


if __name__ == "__main__":
    main()
