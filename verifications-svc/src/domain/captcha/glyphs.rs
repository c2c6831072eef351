//! The vendored fonts, rasterised once per process into coverage maps that drawing resamples.

use std::sync::LazyLock;

use ab_glyph::{Font, FontRef, PxScale, point};

use super::ALPHABET;

/// The size glyphs are rasterised at once; captchas scale them down by [`super::GLYPH_SCALE`].
pub const BASE_PX: f32 = 40.0;

/// The fonts the glyphs come from (files in `assets/`, each with its licence beside it), in
/// the order of [`FONT_BYTES`]; public so that the attack harness can render the same fonts.
/// DejaVu Sans Bold (assets/LICENSE-DejaVu.txt); Liberation Sans Bold and Liberation Serif Bold
/// 2.1.5, SIL OFL 1.1, from Debian's fonts-liberation2 (assets/LICENSE-Liberation.txt).
pub const FONT_FILES: &[&str] = &[
    "DejaVuSans-Bold.ttf",
    "LiberationSans-Bold.ttf",
    "LiberationSerif-Bold.ttf",
];
const FONT_BYTES: &[&[u8]] = &[
    include_bytes!("../../../assets/DejaVuSans-Bold.ttf"),
    include_bytes!("../../../assets/LiberationSans-Bold.ttf"),
    include_bytes!("../../../assets/LiberationSerif-Bold.ttf"),
];

/// One glyph's anti-aliased coverage (0–255), with a one-pixel empty border so bilinear
/// sampling fades out at the edges.
pub struct GlyphBitmap {
    pub width: usize,
    pub height: usize,
    coverage: Vec<u8>,
}

impl GlyphBitmap {
    /// Bilinear sample at (x, y) in bitmap pixel coordinates; 0 outside.
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        let x = x - 0.5;
        let y = y - 0.5;
        if x < 0.0 || y < 0.0 {
            return 0.0;
        }
        let (x0, y0) = (x as usize, y as usize);
        if x0 + 1 >= self.width || y0 + 1 >= self.height {
            return 0.0;
        }
        let at = y0 * self.width + x0;
        let (top, bottom) = (
            &self.coverage[at..at + 2],
            &self.coverage[at + self.width..at + self.width + 2],
        );
        // Most of a glyph's box is empty: skip the arithmetic there (its result would be 0).
        if top == [0, 0] && bottom == [0, 0] {
            return 0.0;
        }
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let lerp = |pair: &[u8]| f32::from(pair[0]) * (1.0 - fx) + f32::from(pair[1]) * fx;
        (lerp(top) * (1.0 - fy) + lerp(bottom) * fy) / 255.0
    }
}

/// `GLYPHS[font][i]` is `ALPHABET[i]` in font `FONT_FILES[font]`.
static GLYPHS: LazyLock<Vec<Vec<GlyphBitmap>>> = LazyLock::new(|| {
    FONT_BYTES
        .iter()
        .map(|bytes| {
            let font = FontRef::try_from_slice(bytes).expect("the vendored fonts are valid TTFs");
            ALPHABET
                .iter()
                .map(|&c| rasterise(&font, char::from(c)))
                .collect()
        })
        .collect()
});

/// Alphabet character `index` of font `font` (both in range: callers pick them from
/// [`ALPHABET`] and [`font_count`]).
pub fn glyph(font: usize, index: usize) -> &'static GlyphBitmap {
    &GLYPHS[font][index]
}

/// How many fonts there are to choose from.
pub fn font_count() -> usize {
    FONT_BYTES.len()
}

fn rasterise(font: &FontRef<'_>, c: char) -> GlyphBitmap {
    let glyph = font
        .glyph_id(c)
        .with_scale_and_position(PxScale::from(BASE_PX), point(0.0, 0.0));
    let outlined = font
        .outline_glyph(glyph)
        .expect("every alphabet character has an outline in every vendored font");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_font_has_every_character_with_ink() {
        assert_eq!(FONT_FILES.len(), font_count());
        for (font, file) in FONT_FILES.iter().enumerate() {
            for (index, &c) in ALPHABET.iter().enumerate() {
                let g = glyph(font, index);
                let inked = g.coverage.iter().filter(|&&v| v > 128).count();
                assert!(inked > 50, "{} in {file}: {inked}", char::from(c));
                assert!(g.height > 20 && g.width > 5, "{} in {file}", char::from(c));
            }
        }
    }
}
