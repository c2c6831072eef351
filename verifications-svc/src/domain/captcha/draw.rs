//! Drawing a captcha picture: pure (text and RNG in, image out), no I/O.
//!
//! Made against the off-the-shelf attacks that `bench/captcha/` runs (exact-colour clustering,
//! thresholds and connected components, template matching against our own fonts under our own
//! ranges, tesseract), while staying easy for people:
//! - no glyph has a colour of its own: the ink runs from one text colour to the next along the
//!   line (glyph *i* fades from colour *i* to colour *i + 1* in a random direction), with
//!   per-pixel jitter, and the strike-through, strokes and dots use the same colour band, so
//!   clustering colours separates neither glyphs from each other nor text from noise;
//! - every glyph comes from one of several fonts with its own size, rotation, shear and vertical
//!   jitter, and neighbours overlap, so components and column projections find no gaps;
//! - the whole text is bent by a slow wave plus a ripple (vertically) and swayed (horizontally,
//!   by row): a non-affine map that templates built under the glyph ranges do not fit;
//! - a strike-through curve 1–2 px thick, in a text colour of its own, runs through the text's
//!   middle band and joins the glyphs; pale arcs, mid-tone lines, short dark strokes in text
//!   colours and dots add clutter.
//!
//! Speed: glyph outlines are rasterised once per process (`glyphs`); each captcha resamples
//! those coverage maps through one affine transform plus the warp per glyph, with bilinear
//! filtering. Draw + PNG encode stays well under the 150 µs budget in release builds (the
//! `captcha_timing` measurement below; numbers in `bench/captcha/README.md`).

use std::ops::{Range, RangeInclusive};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, Rgb, RgbImage};
use imageproc::drawing::{
    draw_cubic_bezier_curve_mut, draw_hollow_ellipse_mut, draw_line_segment_mut,
};
use rand::{Rng, RngExt};

use super::glyphs::{self, GlyphBitmap};
use super::{ALPHABET, HEIGHT, WIDTH};

/// The range each glyph's scale (of [`super::BASE_PX`]) is drawn from. The glyph ranges are
/// public because `bench/captcha/` builds its solver's templates under the very same ranges.
pub const GLYPH_SCALE: Range<f32> = 0.66..0.78;
/// Each glyph's rotation, radians.
pub const GLYPH_ANGLE: Range<f32> = -0.25..0.25;
/// Each glyph's horizontal shear.
pub const GLYPH_SHEAR: Range<f32> = -0.25..0.25;
/// The band each channel of a text colour lies in (ink, strike-through, dark strokes).
pub const TEXT_BAND: RangeInclusive<u8> = 0..=110;
/// Horizontal distance between neighbouring glyph boxes, px: negative, so they touch or overlap.
const GLYPH_GAP: Range<f32> = -2.0..-0.5;
/// Per-pixel jitter of the ink, ± levels per channel.
const INK_JITTER: f32 = 14.0;

/// Draw `text` (characters from [`ALPHABET`]; others are skipped) into a new image.
pub fn draw<R: Rng + ?Sized>(text: &str, rng: &mut R) -> RgbImage {
    let mut img = background(rng);
    pale_arcs(&mut img, rng);
    let warp = Warp::random(rng);
    let mut jitter = Jitter(rng.random::<u32>() | 1);
    for (placement, centre) in lay_out(text, rng) {
        blit(&mut img, &placement, centre, &warp, &mut jitter);
    }
    strike_through(&mut img, rng);
    scatter_clutter(&mut img, rng);
    img
}

/// PNG-encode `img`. Fast deflate (fdeflate): zlib's levels 1-6 save another 600-1,900 bytes
/// for more than ten times the CPU. Paeth is the filter that makes these pictures both smallest and
/// quickest here (400 captchas, release: Paeth 21 µs and 5,377 B; Sub 24 µs and 6,301 B; Up
/// 17 µs but 6,705 B; adaptive 30 µs and 5,514 B; none 22 µs and 14.5 KB).
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut png = Vec::with_capacity(8 * 1024);
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::Paeth).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(png)
}

/// Draw and encode a captcha showing `text`, with noise from the thread's CSPRNG. CPU-bound,
/// well under 0.1 ms: `issue` runs it on the HTTP worker's thread. (`ThreadRng` is `!Send`, so
/// it lives only inside this call.)
pub fn render_png(text: &str) -> Result<Vec<u8>, image::ImageError> {
    encode_png(&draw(text, &mut rand::rng()))
}

/// A colour whose red, green and blue each lie in `range`: the bands keep text dark, noise
/// mid-tone and the background pale, whatever the hue.
fn colour_in<R: Rng + ?Sized>(rng: &mut R, range: RangeInclusive<u8>) -> Rgb<u8> {
    Rgb([
        rng.random_range(range.clone()),
        rng.random_range(range.clone()),
        rng.random_range(range),
    ])
}

/// A pale horizontal gradient: no single background colour to subtract.
fn background<R: Rng + ?Sized>(rng: &mut R) -> RgbImage {
    let (left, right) = (colour_in(rng, 222..=252), colour_in(rng, 222..=252));
    let column: Vec<Rgb<u8>> = (0..WIDTH)
        .map(|x| {
            let t = x as f32 / (WIDTH - 1) as f32;
            Rgb(std::array::from_fn(|i| {
                (f32::from(left[i]) * (1.0 - t) + f32::from(right[i]) * t) as u8
            }))
        })
        .collect();
    RgbImage::from_fn(WIDTH, HEIGHT, |x, _| column[x as usize])
}

/// Pale arcs behind the text: texture that thresholding has to remove first.
fn pale_arcs<R: Rng + ?Sized>(img: &mut RgbImage, rng: &mut R) {
    for _ in 0..2 {
        let pale = colour_in(rng, 170..=215);
        let centre = (
            rng.random_range(0..WIDTH as i32),
            rng.random_range(0..HEIGHT as i32),
        );
        let radii = (rng.random_range(15..45), rng.random_range(8..25));
        draw_hollow_ellipse_mut(img, centre, radii.0, radii.1, pale);
    }
}

/// One sine: `amplitude · sin(2π · t / period + phase)`.
struct Sine {
    amplitude: f32,
    frequency: f32,
    phase: f32,
}

impl Sine {
    fn random<R: Rng + ?Sized>(rng: &mut R, amplitude: Range<f32>, period: Range<f32>) -> Self {
        Self {
            amplitude: rng.random_range(amplitude),
            frequency: std::f32::consts::TAU / rng.random_range(period),
            phase: rng.random_range(0.0..std::f32::consts::TAU),
        }
    }

    fn at(&self, t: f32) -> f32 {
        self.amplitude * (t * self.frequency + self.phase).sin()
    }
}

/// The warp applied to the whole text line, tabulated per pixel column and row: a vertical
/// displacement by column (a slow bend plus a faster ripple) and a horizontal one by row (sway).
struct Warp {
    down: Vec<f32>,
    right: Vec<f32>,
    /// The largest |displacement| down (bend + ripple) and right (sway), to size the area each
    /// glyph is drawn in: no ink lies further from its glyph's box than these.
    reach_down: f32,
    reach_right: f32,
}

impl Warp {
    fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let bend = Sine::random(rng, 2.0..3.5, 50.0..90.0);
        let ripple = Sine::random(rng, 0.5..1.0, 16.0..24.0);
        let sway = Sine::random(rng, 0.5..1.2, 22.0..34.0);
        Self {
            down: (0..WIDTH)
                .map(|x| bend.at(x as f32 + 0.5) + ripple.at(x as f32 + 0.5))
                .collect(),
            right: (0..HEIGHT).map(|y| sway.at(y as f32 + 0.5)).collect(),
            reach_down: bend.amplitude + ripple.amplitude,
            reach_right: sway.amplitude,
        }
    }
}

/// The colour of a glyph's ink: from `from` to `to` along the unit vector `direction` across the
/// glyph (`span` pixels).
struct Ink {
    from: [f32; 3],
    to: [f32; 3],
    direction: (f32, f32),
    span: f32,
}

/// Where and how one glyph is drawn.
struct Placement {
    glyph: &'static GlyphBitmap,
    scale: f32,
    angle: f32,
    shear: f32,
    dy: f32,
    gap: f32,
    ink: Ink,
}

/// Pick each glyph's font, transform and ink, then centre the line: each placement with the
/// image point its glyph's centre goes to.
fn lay_out<R: Rng + ?Sized>(text: &str, rng: &mut R) -> Vec<(Placement, (f32, f32))> {
    let to_f32 = |c: Rgb<u8>| c.0.map(f32::from);
    let mut colour = to_f32(colour_in(rng, TEXT_BAND));
    let placed: Vec<Placement> = text
        .bytes()
        .filter_map(|b| ALPHABET.iter().position(|&a| a == b))
        .map(|index| {
            let glyph = glyphs::glyph(rng.random_range(0..glyphs::font_count()), index);
            let scale = rng.random_range(GLYPH_SCALE);
            // The next glyph starts where this one's ink ends: no colour edge between them.
            let next = to_f32(colour_in(rng, TEXT_BAND));
            let heading = rng.random_range(-0.7..0.7f32);
            let ink = Ink {
                from: std::mem::replace(&mut colour, next),
                to: next,
                direction: (heading.cos(), heading.sin()),
                span: glyph.width.max(glyph.height) as f32 * scale,
            };
            Placement {
                glyph,
                scale,
                angle: rng.random_range(GLYPH_ANGLE),
                shear: rng.random_range(GLYPH_SHEAR),
                dy: rng.random_range(-2.5..2.5),
                gap: rng.random_range(GLYPH_GAP),
                ink,
            }
        })
        .collect();
    let advance = |p: &Placement| p.glyph.width as f32 * p.scale;
    let line_width: f32 = placed.iter().map(|p| advance(p) + p.gap).sum();
    let mut x = (WIDTH as f32 - line_width) / 2.0 + rng.random_range(-4.0..4.0);
    placed
        .into_iter()
        .map(|p| {
            let centre = (x + advance(&p) / 2.0, HEIGHT as f32 / 2.0 + p.dy);
            x += advance(&p) + p.gap;
            (p, centre)
        })
        .collect()
}

/// A tiny xorshift generator for the per-pixel ink jitter: thousands of values per captcha, where
/// a CSPRNG call each would cost more than the drawing (the jitter guards nothing secret).
struct Jitter(u32);

impl Jitter {
    /// Uniform in `-INK_JITTER..INK_JITTER`.
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 >> 8) as f32 / (1u32 << 23) as f32 * INK_JITTER - INK_JITTER
    }
}

/// Resample `p`'s glyph into `img`: scaled, sheared, rotated about `centre`, then warped.
/// Works backwards from each destination pixel (inverse mapping), so the result has no holes.
///
/// The hot loop of a captcha (half of its drawing and encoding, by `perf` on `captcha_timing`):
/// it visits only the pixels the warped glyph box can reach, and skips a pixel whose four
/// bitmap taps are empty before any arithmetic. Column by column, top to bottom: the ink jitter
/// is drawn in that order, so a seed still gives exactly the picture it gave before.
fn blit(img: &mut RgbImage, p: &Placement, centre: (f32, f32), warp: &Warp, jitter: &mut Jitter) {
    let g = p.glyph;
    // Forward: image offset = scale * R(angle) * Shear(shear) * glyph offset.
    let (sin, cos) = p.angle.sin_cos();
    let (a, b) = (p.scale * cos, p.scale * (cos * p.shear - sin));
    let (c, d) = (p.scale * sin, p.scale * (sin * p.shear + cos));
    let det = a * d - b * c;
    let (ia, ib, ic, id) = (d / det, -b / det, -c / det, a / det);

    let (half_w, half_h) = (g.width as f32 / 2.0, g.height as f32 / 2.0);
    // The transformed bitmap's bounding box (its corners map to ±these), plus the warp: the
    // sway moves ink sideways only, the bend and ripple up and down only.
    let extent_x = a.abs() * half_w + b.abs() * half_h + 1.0 + warp.reach_right;
    let extent_y = c.abs() * half_w + d.abs() * half_h + 1.0 + warp.reach_down;
    let clamp_x = |v: f32| v.clamp(0.0, WIDTH as f32) as usize;
    let clamp_y = |v: f32| v.clamp(0.0, HEIGHT as f32) as usize;
    let rows = clamp_y(centre.1 - extent_y)..clamp_y(centre.1 + extent_y);
    let ink = &p.ink;
    let pixels: &mut [u8] = img;
    for x in clamp_x(centre.0 - extent_x)..clamp_x(centre.0 + extent_x) {
        let (left, down) = (x as f32 + 0.5, warp.down[x]);
        for (y, &right) in warp
            .right
            .iter()
            .enumerate()
            .take(rows.end)
            .skip(rows.start)
        {
            let u = left - right - centre.0;
            let v = y as f32 + 0.5 - down - centre.1;
            let alpha = g.sample(ia * u + ib * v + half_w, ic * u + id * v + half_h);
            if alpha <= 0.0 {
                continue;
            }
            let t = ((u * ink.direction.0 + v * ink.direction.1) / ink.span + 0.5).clamp(0.0, 1.0);
            let shift = jitter.next();
            let at = (y * WIDTH as usize + x) * 3;
            for ((d, from), to) in pixels[at..at + 3].iter_mut().zip(ink.from).zip(ink.to) {
                let colour = from + (to - from) * t + shift;
                *d = (f32::from(*d) * (1.0 - alpha) + colour * alpha).clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// A curve across the text, through its middle band (the control points stay within it), in a
/// text colour of its own and 1–2 px thick: it joins the glyphs.
fn strike_through<R: Rng + ?Sized>(img: &mut RgbImage, rng: &mut R) {
    let thickness = rng.random_range(1..=2u8);
    let colour = colour_in(rng, TEXT_BAND);
    let mut band = || rng.random_range(12.0..28.0f32);
    let (y0, y1, c0, c1) = (band(), band(), band(), band());
    let x0 = rng.random_range(0.0..15.0f32);
    let x1 = WIDTH as f32 - rng.random_range(0.0..15.0f32);
    for t in 0..thickness {
        let t = f32::from(t);
        draw_cubic_bezier_curve_mut(
            img,
            (x0, y0 + t),
            (x1, y1 + t),
            (40.0, c0 + t),
            (80.0, c1 + t),
            colour,
        );
    }
}

/// Thin lines in mid tones, short dark strokes in text colours, and scattered dots.
fn scatter_clutter<R: Rng + ?Sized>(img: &mut RgbImage, rng: &mut R) {
    let anywhere = |rng: &mut R| {
        (
            rng.random_range(0.0..WIDTH as f32),
            rng.random_range(0.0..HEIGHT as f32),
        )
    };
    for _ in 0..3 {
        let colour = colour_in(rng, 90..=190);
        let (from, to) = (anywhere(rng), anywhere(rng));
        draw_line_segment_mut(img, from, to, colour);
    }
    for _ in 0..2 {
        let colour = colour_in(rng, TEXT_BAND);
        let from = anywhere(rng);
        let to = (
            from.0 + rng.random_range(-7.0..7.0),
            from.1 + rng.random_range(-5.0..5.0),
        );
        draw_line_segment_mut(img, from, to, colour);
    }
    for _ in 0..70 {
        let colour = colour_in(rng, 0..=200);
        img.put_pixel(
            rng.random_range(0..WIDTH),
            rng.random_range(0..HEIGHT),
            colour,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn dark(img: &RgbImage) -> usize {
        img.pixels()
            .filter(|p| p.0.iter().map(|&c| u32::from(c)).sum::<u32>() < 3 * 120)
            .count()
    }

    #[test]
    fn the_text_is_actually_drawn_in_dark_ink() {
        // Same noise, with and without the text: the text adds a good number of dark pixels.
        let with = draw("MWKH", &mut StdRng::seed_from_u64(1));
        let without = draw("", &mut StdRng::seed_from_u64(1));
        assert!(
            dark(&with) > dark(&without) + 300,
            "{} vs {}",
            dark(&with),
            dark(&without)
        );
    }

    #[test]
    fn drawing_is_deterministic_for_a_seed_and_different_across_seeds() {
        let a = draw("AC34", &mut StdRng::seed_from_u64(3));
        let b = draw("AC34", &mut StdRng::seed_from_u64(3));
        let c = draw("AC34", &mut StdRng::seed_from_u64(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn the_picture_is_120_by_40_whatever_the_text() {
        for text in ["", "A", "MWMW", "ACDEFHJK"] {
            let img = draw(text, &mut StdRng::seed_from_u64(5));
            assert_eq!(img.dimensions(), (WIDTH, HEIGHT), "{text:?}");
        }
    }

    #[test]
    fn every_character_changes_the_picture_and_others_are_not_drawn() {
        let seeded = |text: &str| draw(text, &mut StdRng::seed_from_u64(9));
        let base = seeded("ACDE");
        for changed in ["KCDE", "AKDE", "ACKE", "ACDK"] {
            assert_ne!(seeded(changed), base, "{changed}");
        }
        // Lower case, look-alikes and other bytes are skipped, as if absent.
        assert_eq!(seeded("a0O1IL!é"), seeded(""));
    }

    #[test]
    fn a_glyph_is_not_painted_in_one_flat_colour() {
        // The old generator's weakness: the most frequent exact colours were the glyphs. With one
        // glyph and no other ink nearby, its solid pixels must spread over many colours.
        let mut rng = StdRng::seed_from_u64(11);
        let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
        let warp = Warp::random(&mut rng);
        let mut jitter = Jitter(12345);
        for (placement, centre) in lay_out("M", &mut rng) {
            blit(&mut img, &placement, centre, &warp, &mut jitter);
        }
        let ink: Vec<Rgb<u8>> = img
            .pixels()
            .copied()
            .filter(|p| p.0.iter().all(|&c| c <= 140))
            .collect();
        let mut counts = std::collections::HashMap::new();
        for p in &ink {
            *counts.entry(p.0).or_insert(0usize) += 1;
        }
        let most = counts.values().max().copied().unwrap_or(0);
        assert!(ink.len() > 100, "{} ink pixels", ink.len());
        assert!(
            most * 20 < ink.len(),
            "{most} of {} ink pixels share one colour",
            ink.len()
        );
    }

    /// Captcha draw + PNG encode time, release build: `cargo test --release -p
    /// verifications-svc --lib captcha_timing -- --ignored --nocapture` (bench/verifications.sh
    /// runs it). Besides wall time it prints the thread's CPU time per image (Linux schedstat),
    /// which stays meaningful when other work shares the cores.
    #[test]
    #[ignore = "a measurement, not a check; run in release"]
    fn captcha_timing() {
        let _ = render_png("WARM").expect("warm up");
        let n: u32 = 5_000;
        let mut bytes = 0;
        let mut drawing = std::time::Duration::ZERO;
        let mut rng = rand::rng();
        let cpu_before = thread_cpu_ns();
        let started = std::time::Instant::now();
        for _ in 0..n {
            let text = super::super::random_text(&mut rng);
            let t = std::time::Instant::now();
            let img = draw(&text, &mut rng);
            drawing += t.elapsed();
            bytes += encode_png(&img).expect("encodes").len();
        }
        let per = started.elapsed() / n;
        let draw_per = drawing / n;
        let cpu = match (cpu_before, thread_cpu_ns()) {
            (Some(a), Some(b)) => {
                format!(", thread CPU {:.1} us", (b - a) as f64 / 1e3 / f64::from(n))
            }
            _ => String::new(),
        };
        println!(
            "captcha draw+encode: {:.1} us per image, {} bytes average (draw {:.1} us, encode {:.1} us{cpu})",
            per.as_secs_f64() * 1e6,
            bytes / n as usize,
            draw_per.as_secs_f64() * 1e6,
            (per - draw_per).as_secs_f64() * 1e6
        );
    }

    /// Nanoseconds this thread has spent on a CPU (the first field of schedstat).
    fn thread_cpu_ns() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        stat.split_whitespace().next()?.parse().ok()
    }
}
