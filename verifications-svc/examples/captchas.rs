//! Write captchas and their answers with the service's own drawing code, for the attack harness
//! (`bench/captcha/attack.py`) and the sample sheet in `docs/captcha/`. A tool, not part of the
//! service.
//!
//! ```sh
//! cargo run -p verifications-svc --example captchas -- DIR [COUNT [SEED]]   # DIR/0000.png…, answers.tsv, generator.json
//! cargo run -p verifications-svc --example captchas -- --sheet DIR [SEED]   # DIR/sheet.png, DIR/answers.md
//! ```
//!
//! With a seed the set is reproducible; without one it comes from the OS like the service's.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use image::{Rgb, RgbImage};
use rand::SeedableRng;
use rand::rngs::StdRng;
use verifications_svc::domain::captcha::{
    ALPHABET, BASE_PX, FONT_FILES, GLYPH_ANGLE, GLYPH_SCALE, GLYPH_SHEAR, HEIGHT, LENGTH,
    TEXT_BAND, WIDTH, draw, encode_png, random_text,
};

/// Sample sheet layout: columns × rows of captchas, each enlarged `ZOOM` times.
const COLUMNS: u32 = 4;
const ROWS: u32 = 6;
const ZOOM: u32 = 2;
const MARGIN: u32 = 8;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, dir, rest @ ..] if flag == "--sheet" => {
            sheet(Path::new(dir), &mut rng(rest.first())?)
        }
        [dir, rest @ ..] if !dir.starts_with('-') => {
            let count = rest
                .first()
                .map_or(Ok(500), |n| n.parse())
                .context("COUNT")?;
            set(Path::new(dir), count, &mut rng(rest.get(1))?)
        }
        _ => anyhow::bail!("usage: captchas DIR [COUNT [SEED]] | captchas --sheet DIR [SEED]"),
    }
}

fn rng(seed: Option<&String>) -> anyhow::Result<StdRng> {
    Ok(match seed {
        Some(s) => StdRng::seed_from_u64(s.parse().context("SEED")?),
        None => rand::make_rng(),
    })
}

/// `count` captchas as `DIR/NNNN.png`, their texts in `DIR/answers.tsv` (`file<TAB>text`), and
/// what an attacker may know of the generator in `DIR/generator.json`.
fn set(dir: &Path, count: usize, rng: &mut StdRng) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("generator.json"), generator_json().to_string())?;
    let mut answers = std::fs::File::create(dir.join("answers.tsv"))?;
    for i in 0..count {
        let text = random_text(rng);
        let name = format!("{i:04}.png");
        std::fs::write(dir.join(&name), encode_png(&draw(&text, rng))?)?;
        writeln!(answers, "{name}\t{text}")?;
    }
    eprintln!("{count} captchas in {}", dir.display());
    Ok(())
}

/// The generator's public parameters: the harness builds its templates under the same ranges.
fn generator_json() -> serde_json::Value {
    let fonts_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    serde_json::json!({
        "width": WIDTH,
        "height": HEIGHT,
        "length": LENGTH,
        "alphabet": String::from_utf8_lossy(ALPHABET),
        "fonts": FONT_FILES.iter().map(|f| fonts_dir.join(f)).collect::<Vec<_>>(),
        "base_px": BASE_PX,
        "scale": [GLYPH_SCALE.start, GLYPH_SCALE.end],
        "angle": [GLYPH_ANGLE.start, GLYPH_ANGLE.end],
        "shear": [GLYPH_SHEAR.start, GLYPH_SHEAR.end],
        "text_band": [TEXT_BAND.start(), TEXT_BAND.end()],
    })
}

/// A grid of `COLUMNS × ROWS` captchas enlarged `ZOOM` times (`DIR/sheet.png`), and their texts
/// in the same grid (`DIR/answers.md`), for a person to check they can still be read.
fn sheet(dir: &Path, rng: &mut StdRng) -> anyhow::Result<()> {
    let (cell_w, cell_h) = (WIDTH * ZOOM + MARGIN, HEIGHT * ZOOM + MARGIN);
    let mut sheet = RgbImage::from_pixel(
        COLUMNS * cell_w + MARGIN,
        ROWS * cell_h + MARGIN,
        Rgb([255, 255, 255]),
    );
    let mut table = String::from("| | 1 | 2 | 3 | 4 |\n|---|---|---|---|---|\n");
    for row in 0..ROWS {
        table.push_str(&format!("| row {} |", row + 1));
        for column in 0..COLUMNS {
            let text = random_text(rng);
            let img = draw(&text, rng);
            let big = image::imageops::resize(
                &img,
                WIDTH * ZOOM,
                HEIGHT * ZOOM,
                image::imageops::FilterType::Nearest,
            );
            let (x, y) = (MARGIN + column * cell_w, MARGIN + row * cell_h);
            image::imageops::replace(&mut sheet, &big, i64::from(x), i64::from(y));
            table.push_str(&format!(" `{text}` |"));
        }
        table.push('\n');
    }
    std::fs::create_dir_all(dir)?;
    let png: PathBuf = dir.join("sheet.png");
    sheet
        .save(&png)
        .with_context(|| format!("writing {}", png.display()))?;
    std::fs::write(dir.join("answers.md"), table)?;
    eprintln!("{} and answers.md", png.display());
    Ok(())
}
