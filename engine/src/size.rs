//! Sizes on the command line: `256MiB`, `1.5GiB`, `512k`, `1000000` (bytes). Binary (KiB,
//! MiB, GiB, TiB, and the bare K/M/G/T) and decimal (kB, MB, GB, TB) suffixes, case-blind.

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
        for bad in ["", "MiB", "12XB", "1..2M", "-5"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
