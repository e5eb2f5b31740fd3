//! Draws the per-fabric progress curves of a `fabric_sim --trace FILE.csv` run as a PNG:
//! x is virtual seconds, y is the fraction of the fabric's pieces its hosts hold (0-100 %),
//! one coloured line per fabric, and a dashed vertical line at the lower bound if given.
//!
//! `cargo run --release -p instream-bench --bin fabric_chart -- trace.csv -o docs/fabric_rollout.png`
//!
//! Rendering is done here (lines, a 3x5 pixel font for the tick labels, PNG through `flate2`,
//! which the workspace already has) rather than with `plotters`: its bitmap backend draws
//! text only through system fonts (`ttf`, fontconfig) or a bundled font file (`ab_glyph`),
//! and the chart needs no more than digits.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Draw fabric_sim --trace CSV as a PNG of per-fabric progress")]
struct Args {
    /// The CSV `fabric_sim --trace` wrote.
    csv: PathBuf,
    /// The PNG to write.
    #[arg(short, long, default_value = "fabric_rollout.png")]
    output: PathBuf,
    /// Mark this lower bound (seconds) with a dashed line.
    #[arg(long)]
    bound: Option<f64>,
    /// Image width and height in pixels.
    #[arg(long, default_value_t = 960)]
    width: usize,
    #[arg(long, default_value_t = 540)]
    height: usize,
}

/// An RGB canvas.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<[u8; 3]>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            px: vec![[255, 255, 255]; w * h],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.px[y as usize * self.w + x as usize] = c;
        }
    }

    /// A line `thick` pixels wide (Bresenham, square pen); `dash` > 0 skips every other run
    /// of that many pixels.
    fn line(
        &mut self,
        (x0, y0): (i64, i64),
        (x1, y1): (i64, i64),
        c: [u8; 3],
        thick: i64,
        dash: i64,
    ) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err, mut n) = (x0, y0, dx + dy, 0i64);
        loop {
            if dash == 0 || (n / dash) % 2 == 0 {
                for ox in 0..thick {
                    for oy in 0..thick {
                        self.set(x + ox - thick / 2, y + oy - thick / 2, c);
                    }
                }
            }
            n += 1;
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text in the 3x5 font, `scale` pixels per font pixel, top-left at (x, y).
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (k, ch) in (0i64..).zip(s.chars()) {
            let rows = glyph(ch);
            for (r, bits) in (0i64..).zip(rows) {
                for col in 0..3i64 {
                    if bits >> (2 - col) & 1 == 1 {
                        for ox in 0..scale {
                            for oy in 0..scale {
                                self.set(x + (k * 4 + col) * scale + ox, y + r * scale + oy, c);
                            }
                        }
                    }
                }
            }
        }
    }

    /// PNG bytes (8-bit RGB, no filter, zlib through flate2).
    fn png(&self) -> Result<Vec<u8>> {
        let mut raw = Vec::with_capacity(self.h * (1 + 3 * self.w));
        for row in self.px.chunks(self.w) {
            raw.push(0); // filter: none
            for p in row {
                raw.extend_from_slice(p);
            }
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&raw)?;
        let idat = z.finish()?;
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&u32::try_from(self.w)?.to_be_bytes());
        ihdr.extend_from_slice(&u32::try_from(self.h)?.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, no filter, no interlace
        for (kind, data) in [(b"IHDR", &ihdr), (b"IDAT", &idat), (b"IEND", &Vec::new())] {
            out.extend_from_slice(&u32::try_from(data.len())?.to_be_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&crc.finalize().to_be_bytes());
        }
        Ok(out)
    }
}

/// Rows of a 3x5 glyph, top first, 3 bits each (the chart needs digits, `.`, `%`, `s`).
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '%' => [5, 1, 2, 4, 5],
        's' => [0, 3, 6, 3, 6],
        'f' => [3, 2, 7, 2, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => [0; 5],
    }
}

/// A distinct colour for series `k` of `n` (hues around the wheel, darkened for white).
fn colour(k: usize, n: usize) -> [u8; 3] {
    let h = k as f64 / n.max(1) as f64 * 6.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let (r, g, b) = match h as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    let v = if k.is_multiple_of(2) { 200.0 } else { 140.0 };
    [(r * v) as u8, (g * v) as u8, (b * v) as u8]
}

/// A tick step of 1, 2 or 5 times a power of ten giving at most about `n` ticks over `span`.
fn tick_step(span: f64, n: f64) -> f64 {
    let raw = span / n;
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

fn main() -> std::process::ExitCode {
    exit::exit(run(exit::parse_args()))
}

fn run(a: Args) -> Result<()> {
    let text =
        std::fs::read_to_string(&a.csv).with_context(|| format!("read {}", a.csv.display()))?;
    // fabric -> (secs, fraction) in file order
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 3 {
            bail!(
                "{}:{}: expected secs,fabric,fraction,...",
                a.csv.display(),
                n + 1
            );
        }
        let secs: f64 = f[0]
            .parse()
            .with_context(|| format!("line {}: secs", n + 1))?;
        let frac: f64 = f[2]
            .parse()
            .with_context(|| format!("line {}: fraction", n + 1))?;
        series
            .entry(f[1].to_owned())
            .or_default()
            .push((secs, frac));
    }
    if series.is_empty() {
        bail!("{} has no samples", a.csv.display());
    }
    let t_max = series
        .values()
        .flatten()
        .map(|p| p.0)
        .chain(a.bound)
        .fold(0.0, f64::max)
        .max(1e-3);
    let (w, h) = (a.width, a.height);
    let (left, right, top, bottom) = (70i64, 20i64, 20i64, 50i64);
    let (pw, ph) = (w as i64 - left - right, h as i64 - top - bottom);
    let to_px = |t: f64, y: f64| {
        (
            left + (t / t_max * pw as f64).round() as i64,
            top + ph - (y.clamp(0.0, 1.0) * ph as f64).round() as i64,
        )
    };
    let mut c = Canvas::new(w, h);
    let grey = [220, 220, 220];
    let ink = [40, 40, 40];
    let step = tick_step(t_max, 10.0);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let (x, _) = to_px(t, 0.0);
        c.line((x, top), (x, top + ph), grey, 1, 0);
        let label = if step < 1.0 {
            format!("{t:.1}s")
        } else {
            format!("{t:.0}s")
        };
        c.text(x - 8, top + ph + 10, &label, 3, ink);
        t += step;
    }
    for q in 0..=4 {
        let y = f64::from(q) / 4.0;
        let (_, py) = to_px(0.0, y);
        c.line((left, py), (left + pw, py), grey, 1, 0);
        c.text(8, py - 7, &format!("{}%", q * 25), 3, ink);
    }
    c.line((left, top + ph), (left + pw, top + ph), ink, 2, 0);
    c.line((left, top), (left, top + ph), ink, 2, 0);
    if let Some(b) = a.bound {
        let (x, _) = to_px(b, 0.0);
        c.line((x, top), (x, top + ph), [0, 0, 0], 2, 6);
    }
    let n = series.len();
    for (k, pts) in series.values().enumerate() {
        let col = colour(k, n);
        for pair in pts.windows(2) {
            c.line(
                to_px(pair[0].0, pair[0].1),
                to_px(pair[1].0, pair[1].1),
                col,
                2,
                0,
            );
        }
    }
    let png = c.png()?;
    std::fs::write(&a.output, png).with_context(|| format!("write {}", a.output.display()))?;
    println!(
        "{} fabrics, {:.2} s, written to {}",
        n,
        t_max,
        a.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick_step(10.0, 10.0), 1.0);
        assert_eq!(tick_step(13.0, 10.0), 2.0);
        assert_eq!(tick_step(0.4, 10.0), 0.05);
    }

    #[test]
    fn png_has_signature_and_chunks() {
        let png = Canvas::new(4, 3).png().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
    }
}
