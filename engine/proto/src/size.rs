//! Sizes on the command line: `256MiB`, `1.5GiB`, `512k`, `1000000` (bytes). Binary (KiB,
//! MiB, GiB, TiB, and the bare K/M/G/T) and decimal (kB, MB, GB, TB) suffixes, case-blind.
//! The one size rule: the programs, the control plane and the benchmark harness all parse
//! here, so `10MB` is 10,000,000 bytes everywhere and `10MiB` is 10,485,760.

/// Parses a size such as `256MiB` or `10MB` into bytes; the error names the input.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {s:?} (use e.g. 256MiB)"
            ));
        }
    };
    if num.is_empty() {
        return Err(format!("size {s:?} has no number"));
    }
    let v: f64 = num
        .parse()
        .map_err(|_| format!("size {s:?} is not a number"))?;
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("size {s:?} is too large"));
    }
    // In range and non-negative (checked above and by the digits-only number), so the cast
    // only drops the fraction `round` already settled.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn suffixes() {
        for (s, want) in [
            ("256MiB", 256 << 20),
            ("256mib", 256 << 20),
            ("1.5GiB", 3 << 29),
            ("512k", 512 << 10),
            ("10MB", 10_000_000),
            ("42", 42),
            (" 7 KiB ", 7 << 10),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        // The harness's former cases: binary suffixes, the bare unit, and a lone number.
        for (s, want) in [("64MiB", 64 << 20), ("256KiB", 256 << 10), ("1g", 1 << 30)] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        for bad in ["", "MiB", "12XB", "1..2M", "-5", "12parsecs"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
