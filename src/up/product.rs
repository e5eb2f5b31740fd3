//! The product `instream up` publishes: a random payload of the asked size plus the
//! generic deployment model's hooks (`start` and `stop` record themselves, `health` checks
//! that the payload is there and whole), so the run exercises hooks on every host.

use anyhow::{Context, Result};
use rand::{RngCore, SeedableRng};
use std::io::Write;
use std::path::Path;

const START: &str = r#"#!/bin/sh
# Runs in the version directory; records which version started on which host.
echo "start $INSTREAM_PRODUCT $INSTREAM_VERSION on $INSTREAM_HOST ($INSTREAM_FABRIC), previous: ${INSTREAM_PREVIOUS_VERSION:-none}" >> ../../hooks.log
"#;

const STOP: &str = r#"#!/bin/sh
echo "stop $INSTREAM_PRODUCT $INSTREAM_VERSION on $INSTREAM_HOST" >> ../../hooks.log
"#;

/// `health` knows the payload size it was published with.
fn health(size: u64) -> String {
    format!(
        r#"#!/bin/sh
# Healthy when the payload is there with its published size.
size=$(wc -c < payload.bin) || exit 1
if [ "$size" -ne {size} ]; then
    echo "payload.bin is $size bytes, expected {size}" >&2
    exit 1
fi
"#
    )
}

/// Writes the product version into `dir` (created): `payload.bin` of `size` random bytes
/// and `.instream/hooks/{start,stop,health}`.
pub fn generate(dir: &Path, size: u64) -> Result<()> {
    let hooks = dir.join(".instream/hooks");
    std::fs::create_dir_all(&hooks).with_context(|| format!("create {}", hooks.display()))?;
    let path = dir.join("payload.bin");
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?,
    );
    let mut rng = rand::rngs::SmallRng::from_entropy();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])
            .with_context(|| format!("write {}", path.display()))?;
        left -= n as u64;
    }
    f.flush()
        .with_context(|| format!("write {}", path.display()))?;
    for (name, body) in [
        ("start", START.to_string()),
        ("stop", STOP.to_string()),
        ("health", health(size)),
    ] {
        let p = hooks.join(name);
        std::fs::write(&p, body).with_context(|| format!("write {}", p.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", p.display()))?;
    }
    Ok(())
}
