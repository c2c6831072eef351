//! The image captcha: its text (4 characters from a CSPRNG, no look-alikes) and its picture.
//!
//! The picture is made to stop naive OCR while staying easy for people:
//! - every glyph gets its own size, rotation, shear, vertical jitter and dark colour, and the
//!   glyphs sit close together, so fixed-width segmentation fails;
//! - the whole text line is bent by a random sine wave, so no baseline is straight;
//! - a curve in a text colour strikes through the text (it joins glyphs for connected-component
//!   segmentation), pale arcs lie behind it, and thin lines and dots are scattered over it.
//!
//! Speed: glyph outlines are rasterised once per process (at [`BASE_PX`]); each captcha then only
//! resamples those coverage maps through one affine transform plus the wave, per glyph, with
//! bilinear filtering. Drawing and PNG encoding take tens of microseconds in release builds, and
//! run on the blocking pool (see `routes::image_codes`), at most [`RenderLimit`] at a time.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ab_glyph::{Font, FontRef, PxScale, point};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, Rgb, RgbImage};
use imageproc::drawing::{
    draw_cubic_bezier_curve_mut, draw_hollow_ellipse_mut, draw_line_segment_mut,
};
use rand::{Rng, RngExt};
use redis::aio::ConnectionManager;
use shared::domain::ImageCodeId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store;

/// Image width in pixels (the original's front end shows a 120 × 40 image).
pub const WIDTH: u32 = 120;
/// Image height in pixels.
pub const HEIGHT: u32 = 40;
/// Characters per captcha.
pub const LENGTH: usize = 4;
/// The characters a captcha is made of: the original's `A-Z` and `3-9`, without the ones people
/// confuse once distorted (`0 O Q D`-like pairs are avoided by leaving out `O Q`; also `I L 1`,
/// `B 8`, `G 6`, `S 5`, `Z 2`). Upper case only: the check is case-insensitive anyway.
pub const ALPHABET: &[u8] = b"ACDEFHJKMNPRTUVWXY3479";

/// DejaVu Sans Bold, vendored with its licence (assets/LICENSE-DejaVu.txt).
const FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans-Bold.ttf");
/// The size glyphs are rasterised at once; captchas scale them down by [`GLYPH_SCALE`].
pub const BASE_PX: f32 = 40.0;
/// The fonts the glyphs come from (files in `assets/`), named for the attack harness.
pub const FONT_FILES: &[&str] = &["DejaVuSans-Bold.ttf"];
/// The ranges each glyph's scale (of [`BASE_PX`]), rotation (radians) and shear are drawn from.
/// Public because `bench/captcha/` builds its solver templates under the very same ranges.
pub const GLYPH_SCALE: std::ops::Range<f32> = 0.62..0.74;
/// See [`GLYPH_SCALE`].
pub const GLYPH_ANGLE: std::ops::Range<f32> = -0.40..0.40;
/// See [`GLYPH_SCALE`].
pub const GLYPH_SHEAR: std::ops::Range<f32> = -0.25..0.25;
/// The band each channel of a text colour lies in.
pub const TEXT_BAND: std::ops::RangeInclusive<u8> = 0..=110;

/// One glyph's anti-aliased coverage (0–255), with a one-pixel empty border so bilinear
/// sampling fades out at the edges.
struct GlyphBitmap {
    width: usize,
    height: usize,
    coverage: Vec<u8>,
}

impl GlyphBitmap {
    /// Bilinear sample at (x, y) in bitmap pixel coordinates; 0 outside.
    fn sample(&self, x: f32, y: f32) -> f32 {
        let x = x - 0.5;
        let y = y - 0.5;
        if x < 0.0 || y < 0.0 {
            return 0.0;
        }
        let (x0, y0) = (x as usize, y as usize);
        if x0 + 1 >= self.width || y0 + 1 >= self.height {
            return 0.0;
        }
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let at = |xx: usize, yy: usize| f32::from(self.coverage[yy * self.width + xx]);
        let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
        let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
        (top * (1.0 - fy) + bottom * fy) / 255.0
    }
}

static GLYPHS: LazyLock<Vec<GlyphBitmap>> = LazyLock::new(|| {
    let font = FontRef::try_from_slice(FONT_BYTES).expect("the vendored font is a valid TTF");
    ALPHABET
        .iter()
        .map(|&c| rasterise(&font, char::from(c)))
        .collect()
});

fn rasterise(font: &FontRef<'_>, c: char) -> GlyphBitmap {
    let glyph = font
        .glyph_id(c)
        .with_scale_and_position(PxScale::from(BASE_PX), point(0.0, 0.0));
    let outlined = font
        .outline_glyph(glyph)
        .expect("every alphabet character has an outline in DejaVu Sans Bold");
    let bounds = outlined.px_bounds();
    let width = bounds.width().ceil() as usize + 2;
    let height = bounds.height().ceil() as usize + 2;
    let mut coverage = vec![0u8; width * height];
    outlined.draw(|x, y, c| {
        let (x, y) = (x as usize + 1, y as usize + 1);
        if x < width && y < height {
            coverage[y * width + x] = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    });
    GlyphBitmap {
        width,
        height,
        coverage,
    }
}

/// A finished captcha: the text to store and the PNG to send.
#[derive(Clone)]
pub struct Captcha {
    pub text: String,
    pub png: Vec<u8>,
}

impl std::fmt::Debug for Captcha {
    // The text is the secret the picture protects: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Captcha")
            .field("png_bytes", &self.png.len())
            .finish_non_exhaustive()
    }
}

/// [`LENGTH`] characters drawn uniformly from [`ALPHABET`]. Pass a CSPRNG (`rand::rng()`).
pub fn random_text<R: Rng + ?Sized>(rng: &mut R) -> String {
    (0..LENGTH)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A colour whose red, green and blue each lie in `range`: the bands keep text dark, noise mid-tone
/// and the background pale, whatever the hue.
fn colour_in<R: Rng + ?Sized>(rng: &mut R, range: std::ops::RangeInclusive<u8>) -> Rgb<u8> {
    Rgb([
        rng.random_range(range.clone()),
        rng.random_range(range.clone()),
        rng.random_range(range),
    ])
}

/// Draw `text` (characters from [`ALPHABET`]; others are skipped) into a new image.
pub fn draw<R: Rng + ?Sized>(text: &str, rng: &mut R) -> RgbImage {
    let background = colour_in(rng, 228..=252);
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, background);

    // Pale arcs behind the text: texture that thresholding has to remove first.
    for _ in 0..2 {
        let pale = colour_in(rng, 170..=215);
        draw_hollow_ellipse_mut(
            &mut img,
            (
                rng.random_range(0..WIDTH as i32),
                rng.random_range(0..HEIGHT as i32),
            ),
            rng.random_range(15..45),
            rng.random_range(8..25),
            pale,
        );
    }

    let wave = Wave {
        amplitude: rng.random_range(1.5..3.0),
        frequency: std::f32::consts::TAU / rng.random_range(55.0..90.0),
        phase: rng.random_range(0.0..std::f32::consts::TAU),
    };

    // Lay the glyphs out first, so the line can be centred whatever its width.
    let placed: Vec<Placement> = text
        .bytes()
        .filter_map(|b| ALPHABET.iter().position(|&a| a == b))
        .map(|index| Placement {
            index,
            scale: rng.random_range(GLYPH_SCALE),
            angle: rng.random_range(GLYPH_ANGLE),
            shear: rng.random_range(GLYPH_SHEAR),
            dy: rng.random_range(-2.5..2.5),
            gap: rng.random_range(-2.5..0.5),
            colour: colour_in(rng, TEXT_BAND),
        })
        .collect();
    let glyphs = &*GLYPHS;
    let line_width: f32 = placed
        .iter()
        .map(|p| glyphs[p.index].width as f32 * p.scale + p.gap)
        .sum();
    let mut x = (WIDTH as f32 - line_width) / 2.0 + rng.random_range(-4.0..4.0);
    for p in &placed {
        let g = &glyphs[p.index];
        let advance = g.width as f32 * p.scale;
        let centre = (x + advance / 2.0, HEIGHT as f32 / 2.0 + p.dy);
        blit(&mut img, g, p, centre, &wave);
        x += advance + p.gap;
    }

    // A strike-through curve in a text colour, two pixels thick: it joins the glyphs.
    let strike = placed.first().map_or(Rgb([60, 60, 60]), |p| p.colour);
    let (y0, y1) = (
        rng.random_range(12.0..28.0),
        rng.random_range(12.0..28.0f32),
    );
    let (c0, c1) = (
        rng.random_range(0.0..40.0f32),
        rng.random_range(0.0..40.0f32),
    );
    let x0 = rng.random_range(0.0..15.0f32);
    let x1 = WIDTH as f32 - rng.random_range(0.0..15.0f32);
    for t in [0.0, 1.0] {
        draw_cubic_bezier_curve_mut(
            &mut img,
            (x0, y0 + t),
            (x1, y1 + t),
            (40.0, c0 + t),
            (80.0, c1 + t),
            strike,
        );
    }

    // Thin lines in mid tones and scattered dots.
    for _ in 0..3 {
        let colour = colour_in(rng, 90..=190);
        draw_line_segment_mut(
            &mut img,
            (
                rng.random_range(0.0..WIDTH as f32),
                rng.random_range(0.0..HEIGHT as f32),
            ),
            (
                rng.random_range(0.0..WIDTH as f32),
                rng.random_range(0.0..HEIGHT as f32),
            ),
            colour,
        );
    }
    for _ in 0..70 {
        let colour = colour_in(rng, 40..=200);
        img.put_pixel(
            rng.random_range(0..WIDTH),
            rng.random_range(0..HEIGHT),
            colour,
        );
    }
    img
}

/// Where and how one glyph is drawn.
struct Placement {
    index: usize,
    scale: f32,
    angle: f32,
    shear: f32,
    dy: f32,
    gap: f32,
    colour: Rgb<u8>,
}

/// The vertical sine displacement applied to the whole text line.
struct Wave {
    amplitude: f32,
    frequency: f32,
    phase: f32,
}

impl Wave {
    fn at(&self, x: f32) -> f32 {
        self.amplitude * (x * self.frequency + self.phase).sin()
    }
}

/// Resample glyph `g` into `img`: scaled, sheared, rotated about `centre`, then bent by `wave`.
/// Works backwards from each destination pixel (inverse mapping), so the result has no holes.
fn blit(img: &mut RgbImage, g: &GlyphBitmap, p: &Placement, centre: (f32, f32), wave: &Wave) {
    // Forward: image offset = scale * R(angle) * Shear(shear) * glyph offset.
    let (sin, cos) = p.angle.sin_cos();
    let (a, b) = (p.scale * cos, p.scale * (cos * p.shear - sin));
    let (c, d) = (p.scale * sin, p.scale * (sin * p.shear + cos));
    let det = a * d - b * c;
    let (ia, ib, ic, id) = (d / det, -b / det, -c / det, a / det);

    let (half_w, half_h) = (g.width as f32 / 2.0, g.height as f32 / 2.0);
    // The transformed bitmap's bounding box (its corners map to ±these), plus the bend.
    let extent_x = a.abs() * half_w + b.abs() * half_h + 1.0;
    let reach = c.abs() * half_w + d.abs() * half_h + 1.0 + wave.amplitude;
    let clamp_x = |v: f32| v.clamp(0.0, WIDTH as f32) as u32;
    let clamp_y = |v: f32| v.clamp(0.0, HEIGHT as f32) as u32;
    for x in clamp_x(centre.0 - extent_x)..clamp_x(centre.0 + extent_x) {
        let px = x as f32 + 0.5;
        let bend = wave.at(px);
        let u = px - centre.0;
        for y in clamp_y(centre.1 - reach)..clamp_y(centre.1 + reach) {
            let v = y as f32 + 0.5 - bend - centre.1;
            let alpha = g.sample(ia * u + ib * v + half_w, ic * u + id * v + half_h);
            if alpha > 0.0 {
                let dst = img.get_pixel_mut(x, y);
                for (d, s) in dst.0.iter_mut().zip(p.colour.0) {
                    *d = (f32::from(*d) * (1.0 - alpha) + f32::from(s) * alpha) as u8;
                }
            }
        }
    }
}

/// PNG-encode `img`. Fast deflate: the images are small and mostly flat, so the better
/// compression levels save a few hundred bytes for several times the CPU.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut png = Vec::with_capacity(6 * 1024);
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::Sub).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(png)
}

/// Draw and encode a captcha showing `text`, with noise from the thread's CSPRNG. CPU-bound:
/// call it on the blocking pool. (`ThreadRng` is `!Send`, so it lives only inside this call.)
pub fn render_png(text: &str) -> Result<Vec<u8>, image::ImageError> {
    let img = draw(text, &mut rand::rng());
    encode_png(&img)
}

/// A new random text and its PNG.
pub fn generate() -> Result<Captcha, image::ImageError> {
    let text = random_text(&mut rand::rng());
    let png = render_png(&text)?;
    Ok(Captcha { text, png })
}

/// Why a captcha could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot store the image code")]
    Unavailable(#[source] redis::RedisError),
    #[error("cannot draw the captcha")]
    Render(#[source] anyhow::Error),
    #[error("all {0} captcha render slots stayed busy for the whole wait")]
    Busy(usize),
}

/// The per-process bound on concurrent captcha renders (`CAPTCHA_MAX_CONCURRENT_RENDERS`).
///
/// Each render takes a blocking-pool thread, and tokio lets that pool grow to 512 threads: an
/// unbounded flood would hold hundreds of threads (and their stacks) and break the memory goal of
/// docs/performance.md §1 memory goal while rendering no faster, the CPU being the limit. A few
/// renders per core keep the cores busy; a request that cannot get a slot within `wait` is refused
/// (503), instead of queueing without bound.
#[derive(Debug, Clone)]
pub struct RenderLimit {
    permits: Arc<Semaphore>,
    max: usize,
    wait: Duration,
}

impl RenderLimit {
    /// At most `max` renders at a time in this process; wait up to `wait` for a slot.
    pub fn new(max: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            wait,
        }
    }

    /// A render slot, released when the permit is dropped.
    async fn acquire(&self) -> Result<OwnedSemaphorePermit, IssueError> {
        match tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or closed (never: nothing closes it).
            _ => Err(IssueError::Busy(self.max)),
        }
    }
}

/// Issue a captcha for `id`: a new text stored as `img_{id}` for 300 s (replacing any earlier
/// one) and its PNG. A render slot of `limit` is taken first, so a refused request stores
/// nothing; drawing then runs on the blocking pool while the text is being stored.
pub async fn issue(
    redis: &ConnectionManager,
    limit: &RenderLimit,
    id: &ImageCodeId,
) -> Result<Vec<u8>, IssueError> {
    let permit = limit.acquire().await?;
    let text = random_text(&mut rand::rng());
    let to_draw = text.clone();
    let (png, stored) = tokio::join!(
        tokio::task::spawn_blocking(move || {
            // Held by the render itself: if the request is dropped meanwhile, the slot stays
            // taken until the thread is really free.
            let _permit = permit;
            render_png(&to_draw)
        }),
        store::store_image_code(redis, id, &text),
    );
    stored.map_err(IssueError::Unavailable)?;
    png.map_err(|e| IssueError::Render(e.into()))?
        .map_err(|e| IssueError::Render(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn texts_are_four_characters_of_the_alphabet_without_look_alikes() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2_000 {
            let text = random_text(&mut rng);
            assert_eq!(text.chars().count(), LENGTH, "{text}");
            for c in text.bytes() {
                assert!(ALPHABET.contains(&c), "{text}");
                seen.insert(c);
            }
        }
        assert_eq!(seen.len(), ALPHABET.len(), "every symbol gets drawn");
        for look_alike in b"0O1IL" {
            assert!(
                !ALPHABET.contains(look_alike),
                "{}",
                char::from(*look_alike)
            );
        }
    }

    #[test]
    fn a_captcha_is_a_120_by_40_png_that_decodes() {
        let captcha = generate().expect("encodes");
        assert_eq!(captcha.text.len(), LENGTH);
        assert!(captcha.png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let decoded = image::load_from_memory_with_format(&captcha.png, image::ImageFormat::Png)
            .expect("decodes as PNG");
        assert_eq!((decoded.width(), decoded.height()), (WIDTH, HEIGHT));
        assert!(captcha.png.len() < 16 * 1024, "{} bytes", captcha.png.len());
    }

    #[test]
    fn the_text_is_actually_drawn_in_dark_ink() {
        // Same noise, with and without the text: the text adds a good number of dark pixels.
        let dark = |img: &RgbImage| {
            img.pixels()
                .filter(|p| p.0.iter().map(|&c| u32::from(c)).sum::<u32>() < 3 * 120)
                .count()
        };
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
    fn the_debug_form_hides_the_text() {
        let captcha = Captcha {
            text: "ACDE".into(),
            png: vec![1, 2, 3],
        };
        assert_eq!(format!("{captcha:?}"), "Captcha { png_bytes: 3, .. }");
    }

    /// Draw + encode time, release build: `cargo test --release -p verifications-svc --lib
    /// captcha_timing -- --ignored --nocapture` (bench/verifications.sh runs it).
    #[test]
    #[ignore = "a measurement, not a check; run in release"]
    fn captcha_timing() {
        let _ = generate().expect("warm up");
        let n: u32 = 5_000;
        let mut bytes = 0;
        let mut drawing = std::time::Duration::ZERO;
        let mut rng = rand::rng();
        let started = std::time::Instant::now();
        for _ in 0..n {
            let text = random_text(&mut rng);
            let t = std::time::Instant::now();
            let img = draw(&text, &mut rng);
            drawing += t.elapsed();
            bytes += encode_png(&img).expect("encodes").len();
        }
        let per = started.elapsed() / n;
        let draw_per = drawing / n;

        println!(
            "captcha draw+encode: {:.1} us per image, {} bytes average (draw {:.1} us, encode {:.1} us)",
            per.as_secs_f64() * 1e6,
            bytes / n as usize,
            draw_per.as_secs_f64() * 1e6,
            (per - draw_per).as_secs_f64() * 1e6
        );
    }

    /// Regenerate the sample images under docs/captcha/ (named after their text):
    /// `cargo test -p verifications-svc --lib write_samples -- --ignored`.
    #[test]
    #[ignore = "writes files into docs/"]
    fn write_samples() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/captcha");
        std::fs::create_dir_all(&dir).expect("docs/captcha can be created");
        for entry in std::fs::read_dir(&dir).expect("readable").flatten() {
            if entry.path().extension().is_some_and(|e| e == "png") {
                std::fs::remove_file(entry.path()).expect("old sample removed");
            }
        }
        // Also a 4x enlarged sheet of all samples, for looking at them.
        let mut sheet = RgbImage::from_pixel(WIDTH, 4 * HEIGHT + 3 * 4, Rgb([255, 255, 255]));
        for i in 0..4 {
            let captcha = generate().expect("encodes");
            std::fs::write(dir.join(format!("{}.png", captcha.text)), &captcha.png)
                .expect("sample written");
            let img = image::load_from_memory(&captcha.png)
                .expect("decodes")
                .to_rgb8();
            image::imageops::replace(&mut sheet, &img, 0, i64::from(i * (HEIGHT + 4)));
        }
        let (w, h) = (sheet.width() * 4, sheet.height() * 4);
        image::imageops::resize(&sheet, w, h, image::imageops::FilterType::Nearest)
            .save(dir.join("sheet-x4.png"))
            .expect("sheet written");
    }

    /// With every render slot taken, a request waits `wait`, is refused, and stores nothing;
    /// once the slot is free the next one is served and stored.
    #[tokio::test]
    async fn a_busy_render_limit_refuses_after_the_wait_without_storing_the_key() {
        use redis::Commands;
        let db = harness::test_redis();
        let redis = store::connect(&db.url(), Duration::from_secs(2)).expect("URL");
        let limit = RenderLimit::new(1, Duration::from_millis(100));
        let held = limit.acquire().await.expect("the one slot");
        let id = ImageCodeId::parse("6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7b").expect("uuid");
        let started = std::time::Instant::now();
        let refused = issue(&redis, &limit, &id).await;
        assert!(matches!(refused, Err(IssueError::Busy(1))), "{refused:?}");
        assert!(started.elapsed() >= Duration::from_millis(100));
        let mut conn = db.client().get_connection().expect("connects");
        let stored: Option<String> = conn.get(format!("img_{id}")).expect("GET");
        assert_eq!(stored, None, "a refused request stores nothing");

        drop(held);
        let png = issue(&redis, &limit, &id)
            .await
            .expect("a free slot renders");
        assert!(png.starts_with(b"\x89PNG"));
        let stored: Option<String> = conn.get(format!("img_{id}")).expect("GET");
        assert!(stored.is_some());
        // The render released its slot when it finished.
        assert_eq!(limit.permits.available_permits(), 1);
    }
}
