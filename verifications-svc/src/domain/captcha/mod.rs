//! The image captcha: its text (4 characters from a CSPRNG, no look-alikes), its picture
//! ([`draw`], pure: text and RNG in, image out) and its issuing ([`issue`]: the client's
//! issuance limit, admission by the expected wait for this worker's renders, the limit counted
//! and the text stored in Redis, then the drawing on the worker's thread).
//!
//! The captcha is a speed bump against scripts, not the defence: the per-client and global
//! limits in front of every SMS are. `bench/captcha/` measures how well off-the-shelf solvers
//! read it.

mod draw;
mod glyphs;
mod issue;

use rand::{Rng, RngExt};

pub use draw::{GLYPH_ANGLE, GLYPH_SCALE, GLYPH_SHEAR, TEXT_BAND, draw, encode_png, render_png};
pub use glyphs::{BASE_PX, FONT_FILES};
pub use issue::{IssueError, Issuer, Refusals, issue};

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

/// A new random text and its PNG.
pub fn generate() -> Result<Captcha, image::ImageError> {
    let text = random_text(&mut rand::rng());
    let png = render_png(&text)?;
    Ok(Captcha { text, png })
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
    fn the_debug_form_hides_the_text() {
        let captcha = Captcha {
            text: "ACDE".into(),
            png: vec![1, 2, 3],
        };
        assert_eq!(format!("{captcha:?}"), "Captcha { png_bytes: 3, .. }");
    }
}
