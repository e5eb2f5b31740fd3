//! `reliability_table`: puts the rows that the fault tests wrote (one file each under
//! `<target>/tmp/reliability/`, written only when the test passed) into docs/RELIABILITY.md between
//! the `<!-- reliability:begin -->` and `<!-- reliability:end -->` markers. Run the tests
//! first (`bash .ci/run`, or `cargo test --workspace`), then this.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Regenerate docs/RELIABILITY.md's reliability table from the fault tests' rows.
#[derive(Parser)]
struct Args {
    /// Directory of the rows [default: $CARGO_TARGET_DIR/tmp/reliability, or
    /// target/tmp/reliability].
    #[arg(long)]
    rows: Option<PathBuf>,
    /// The document to rewrite.
    #[arg(long, default_value = "docs/RELIABILITY.md")]
    readme: PathBuf,
}

const BEGIN: &str = "<!-- reliability:begin -->";
const END: &str = "<!-- reliability:end -->";

fn main() -> std::process::ExitCode {
    exit::exit(run(exit::parse_args()))
}

fn run(a: Args) -> Result<()> {
    let rows_dir = a.rows.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("tmp/reliability")
    });
    let mut rows: Vec<String> = std::fs::read_dir(&rows_dir)
        .with_context(|| format!("read {} (run the tests first)", rows_dir.display()))?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .map(|e| std::fs::read_to_string(e.path()).map(|t| t.trim().to_string()))
        .collect::<std::io::Result<_>>()?;
    rows.sort();
    if rows.is_empty() {
        bail!("no rows in {}", rows_dir.display());
    }
    let readme = std::fs::read_to_string(&a.readme)
        .with_context(|| format!("read {}", a.readme.display()))?;
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        bail!("{} has no {BEGIN} ... {END} markers", a.readme.display());
    };
    let table = format!(
        "{BEGIN}\n| fault | outcome | lost |\n| --- | --- | --- |\n{}\n",
        rows.join("\n")
    );
    let out = format!("{}{table}{}", &readme[..b], &readme[e..]);
    std::fs::write(&a.readme, out).with_context(|| format!("write {}", a.readme.display()))?;
    println!("{} rows written to {}", rows.len(), a.readme.display());
    Ok(())
}
