//! Prometheus text exposition (format 0.0.4), written by hand: a few counters and gauges do
//! not need a metrics crate. Names follow Prometheus conventions (`_total` for counters,
//! base units such as `_bytes`); every family gets its `# HELP` and `# TYPE` once, before
//! its samples.

use std::fmt::Write;

/// Builds one `/metrics` answer.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// The media type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Exposition {
    /// An empty answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.family(name, help, "counter", &[(&[], value)])
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.family(name, help, "gauge", &[(&[], value)])
    }

    /// A family of `kind` ("counter" or "gauge") with labelled samples.
    pub fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        samples: &[(&[(&str, &str)], u64)],
    ) -> &mut Self {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {value}");
        }
        self
    }

    /// The text to serve.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_before_their_samples() {
        let text = Exposition::new()
            .counter("x_bytes_total", "Bytes.\nMore", 5)
            .family(
                "y_total",
                "Per protocol.",
                "counter",
                &[(&[("protocol", "udp")], 1), (&[("protocol", "h\"t")], 2)],
            )
            .finish();
        assert_eq!(
            text,
            "# HELP x_bytes_total Bytes.\\nMore\n# TYPE x_bytes_total counter\nx_bytes_total 5\n\
             # HELP y_total Per protocol.\n# TYPE y_total counter\n\
             y_total{protocol=\"udp\"} 1\ny_total{protocol=\"h\\\"t\"} 2\n"
        );
    }
}
