//! Prometheus text exposition, parsed leniently: what `/metrics` endpoints print (the
//! agent reads pcm-sensor-server's; the test harness reads fitsched's own and
//! kube-scheduler's). One parser for both.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: {what}: {text:?}")]
    Malformed { line: usize, what: &'static str, text: String },
    #[error("no metric samples in the text")]
    Empty,
}

/// One `name{labels} value` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// True when the label keys are exactly those of `want`, with the given values where
    /// one is given. Exact key sets keep a per-socket line apart from the per-core and
    /// aggregate lines that share its name.
    pub fn has_labels(&self, want: &[(&str, Option<&str>)]) -> bool {
        self.labels.len() == want.len()
            && want.iter().all(|(key, value)| self.label(key).is_some_and(|have| value.is_none_or(|v| v == have)))
    }
}

/// A parsed answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Lines that were neither comments nor valid samples. They are skipped rather than
    /// fatal: the server builds some names from device event names (accelerators) that
    /// need not be valid Prometheus names, and one odd line must not hide the rest.
    pub skipped_lines: usize,
}

impl Exposition {
    pub fn select<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&'a str, Option<&'a str>)],
    ) -> impl Iterator<Item = f64> + 'a {
        self.samples.iter().filter(move |s| s.name == name && s.has_labels(want)).map(|s| s.value)
    }

    /// The first finite value of `name` with exactly these labels.
    pub fn one(&self, name: &str, want: &[(&str, Option<&str>)]) -> Option<f64> {
        self.select(name, want).find(|v| v.is_finite())
    }

    /// The sum of the finite values of `name` with these labels, or `None` when there is none.
    pub fn sum(&self, name: &str, want: &[(&str, Option<&str>)]) -> Option<f64> {
        self.select(name, want).filter(|v| v.is_finite()).fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }
}

/// Parses Prometheus text: `# ...` comments (HELP, TYPE or free text), blank lines, and
/// `name{label="value",...} value [timestamp]` with `\\`, `\"` and `\n` escapes in label
/// values. Fails only when no line is a valid sample.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    let mut first_error = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_sample(line) {
            Ok(sample) => out.samples.push(sample),
            Err(what) => {
                out.skipped_lines += 1;
                first_error.get_or_insert_with(|| ParseError::Malformed { line: i + 1, what, text: clip(line, 80) });
            }
        }
    }
    if out.samples.is_empty() {
        return Err(first_error.unwrap_or(ParseError::Empty));
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("bad metric name");
    }
    let mut rest = line[name_end..].trim_start();
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    } else if !line[name_end..].starts_with(char::is_whitespace) {
        return Err("bad metric name");
    }
    let mut tokens = rest.split_ascii_whitespace();
    let value = parse_value(tokens.next().ok_or("no value")?)?;
    if let Some(timestamp) = tokens.next() {
        timestamp.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if tokens.next().is_some() {
        return Err("text after the timestamp");
    }
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Parses the label list after `{` and returns the text after the closing `}`.
fn parse_labels<'a>(mut s: &'a str, out: &mut Vec<(String, String)>) -> Result<&'a str, &'static str> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let key_end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        let key = &s[..key_end];
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
            return Err("bad label name");
        }
        s = s[key_end..].trim_start().strip_prefix('=').ok_or("no '=' after a label name")?.trim_start();
        s = s.strip_prefix('"').ok_or("unquoted label value")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let closing_quote = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    // The format defines no other escapes; keep them as written.
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("unterminated label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((key.to_owned(), value));
        s = s[closing_quote + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label value");
        }
    }
}

fn parse_value(token: &str) -> Result<f64, &'static str> {
    // C++ iostreams print non-finite doubles as `nan`, `-nan` and `inf`; Prometheus
    // writes `NaN` and `+Inf`.
    match token.to_ascii_lowercase().as_str() {
        "nan" | "-nan" | "+nan" => Ok(f64::NAN),
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        _ => token.parse::<f64>().map_err(|_| "bad value"),
    }
}

fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_the_format_beyond_what_pcm_prints() {
        let text = "# HELP up Whether up.\r\n# TYPE up gauge\r\n\r\n\
                    up 1\r\n\
                    esc{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\",nl=\"a\\nb\",odd=\"\\d\",} 2.5 1700000000000\n\
                    spaced { a = \"1\" , b=\"2\" } -3e2\n\
                    nan_value NaN\n  cpp_nan -nan\ninf_value +Inf\nneg -Inf\nutf8{l=\"ünï\"} 4\n";
        let x = parse(text).unwrap();
        assert_eq!(x.skipped_lines, 0);
        let esc = &x.samples[1];
        assert_eq!(esc.label("path"), Some("C:\\dir"));
        assert_eq!(esc.label("quote"), Some("say \"hi\""));
        assert_eq!(esc.label("nl"), Some("a\nb"));
        assert_eq!(esc.label("odd"), Some("\\d"));
        assert_eq!(esc.value, 2.5);
        assert_eq!(x.samples[2].labels.len(), 2);
        assert_eq!(x.samples[2].value, -300.0);
        assert!(x.samples[3].value.is_nan() && x.samples[4].value.is_nan());
        assert_eq!(x.samples[5].value, f64::INFINITY);
        assert_eq!(x.samples[6].value, f64::NEG_INFINITY);
        assert_eq!(x.samples[7].label("l"), Some("ünï"));
    }

    #[test]
    fn parser_skips_bad_lines_and_rejects_text_without_samples() {
        let x = parse(
            "good 1\nbad{a=1} 2\nworse{a=\"1} 3\n9name 4\nno_value\nname 1 2 3\nx{a=\"1\" b=\"2\"} 1\nname-x 1\n",
        )
        .unwrap();
        assert_eq!(x.samples.len(), 1);
        assert_eq!(x.skipped_lines, 7);
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("# only comments\n"), Err(ParseError::Empty));
        let html = "<!DOCTYPE html>\n<html lang=\"en\">\n";
        assert!(matches!(parse(html), Err(ParseError::Malformed { line: 1, .. })));
        let long = format!("{} x", "é".repeat(200));
        let Err(ParseError::Malformed { text, .. }) = parse(&long) else { panic!("accepted {long}") };
        assert_eq!(text.chars().count(), 81);
    }
}
