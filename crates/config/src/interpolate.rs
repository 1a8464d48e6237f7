//! `${VAR}` interpolation on the raw text, before YAML parsing, without losing positions.
//!
//! Secrets and per-environment URLs come from the environment, so every scalar may contain
//! `${VAR}` (the variable must be set) or `${VAR:-default}` (the default is used when the
//! variable is unset or empty). `$${` writes a literal `${`. Substituting text shifts columns, so
//! every substitution is recorded and `Interpolated::original_position` maps a position that
//! the YAML parser reports in the substituted text back to the file the user edits. A value that
//! contains a line break is rejected: it would shift every line after it.
//!
//! The substitution is textual, so it has to respect YAML's quoting:
//! - comments (`#` at the start of a line or after a space, outside quotes) are left alone, so a
//!   commented-out line may name a variable that is not set;
//! - inside `"..."` the value's `\` and `"` are escaped, inside `'...'` its `'` is doubled;
//! - in a plain (unquoted) scalar, a value that YAML would read differently (it contains `: ` or
//!   ` #`, starts with an indicator such as `*` or `[`, has surrounding spaces, or holds `,[]{}`
//!   inside a flow collection) is rejected with a hint to quote the reference.
//!
//! Quote and comment detection works line by line (a quoted scalar spanning lines is treated as
//! ending at the line break), which is what a configuration file needs.

use std::path::Path;

use crate::error::ConfigError;

/// The environment lookup: `Some(value)` when the variable is set.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The substituted text plus what is needed to map positions back to the original.
#[derive(Debug)]
pub(crate) struct Interpolated {
    pub text: String,
    edits: Vec<Edit>,
}

/// One replaced span on one line, in 1-based character columns.
#[derive(Debug, Clone, Copy)]
struct Edit {
    line: usize,
    out_col: usize,
    out_len: usize,
    in_col: usize,
    in_len: usize,
}

impl Interpolated {
    /// Maps a 1-based (line, column) of the substituted text to the original text. A position
    /// inside a substituted value maps to the `$` of its reference.
    pub fn original_position(&self, line: usize, column: usize) -> (usize, usize) {
        let last = self.edits.iter().rfind(|e| e.line == line && e.out_col <= column);
        match last {
            None => (line, column),
            Some(e) if column < e.out_col + e.out_len.max(1) => (line, e.in_col),
            Some(e) => (line, column + (e.in_col + e.in_len) - (e.out_col + e.out_len)),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    Double,
    Single,
}

/// Substitutes every reference in `text`; on failure returns every problem found, in order.
pub(crate) fn interpolate(file: &Path, text: &str, env: EnvLookup<'_>) -> Result<Interpolated, Vec<ConfigError>> {
    let mut out = String::with_capacity(text.len());
    let mut edits = Vec::new();
    let mut errors = Vec::new();
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        interpolate_line(file, idx + 1, line, env, &mut out, &mut edits, &mut errors);
    }
    if errors.is_empty() {
        Ok(Interpolated { text: out, edits })
    } else {
        Err(errors)
    }
}

/// Whether a quote character at this point opens a quoted scalar rather than being part of a
/// plain one: only at the start of a value, a key, a list item or a flow collection entry.
fn starts_scalar(prev: Option<char>, space_since_prev: bool) -> bool {
    match prev {
        None | Some(':' | '[' | '{' | ',' | '?') => true,
        Some('-') => space_since_prev,
        _ => false,
    }
}

fn interpolate_line(
    file: &Path,
    line_no: usize,
    line: &str,
    env: EnvLookup<'_>,
    out: &mut String,
    edits: &mut Vec<Edit>,
    errors: &mut Vec<ConfigError>,
) {
    let chars: Vec<char> = line.chars().collect();
    let mut quote: Option<Quote> = None;
    // The last significant character outside quotes, and whether whitespace followed it.
    let mut prev: Option<char> = None;
    let mut space_since_prev = false;
    let mut flow_depth = 0usize;
    let mut out_col = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let in_col = i + 1;
        if c == '$' && chars.get(i + 1) == Some(&'$') && chars.get(i + 2) == Some(&'{') {
            out.push_str("${");
            edits.push(Edit {
                line: line_no,
                out_col,
                out_len: 2,
                in_col,
                in_len: 3,
            });
            out_col += 2;
            i += 3;
            prev = Some('{');
            space_since_prev = false;
            continue;
        }
        if c == '$' && chars.get(i + 1) == Some(&'{') {
            let Some(close) = chars[i + 2..].iter().position(|&ch| ch == '}').map(|p| p + i + 2) else {
                errors.push(ConfigError::at(
                    file,
                    line_no,
                    in_col,
                    "unterminated `${` (no `}` on this line); write `$${` for a literal `${`",
                ));
                // Nothing after an unterminated reference can be interpreted reliably.
                let rest: String = chars[i..].iter().collect();
                out.push_str(&rest);
                return;
            };
            let reference: String = chars[i..=close].iter().collect();
            let inner: String = chars[i + 2..close].iter().collect();
            let in_len = close + 1 - i;
            let at_start = quote.is_none() && starts_scalar(prev, space_since_prev);
            match resolve(&inner, &reference, env) {
                Err(msg) => {
                    errors.push(ConfigError::at(file, line_no, in_col, msg));
                    out.push_str(&reference);
                    out_col += in_len;
                }
                Ok((name, value)) => match escape(&name, &value, quote, at_start, flow_depth > 0) {
                    Err(msg) => {
                        errors.push(ConfigError::at(file, line_no, in_col, msg));
                        out.push_str(&reference);
                        out_col += in_len;
                    }
                    Ok(escaped) => {
                        let out_len = escaped.chars().count();
                        out.push_str(&escaped);
                        edits.push(Edit {
                            line: line_no,
                            out_col,
                            out_len,
                            in_col,
                            in_len,
                        });
                        out_col += out_len;
                    }
                },
            }
            if quote.is_none() {
                prev = Some('x');
                space_since_prev = false;
            }
            i = close + 1;
            continue;
        }
        match quote {
            None => {
                if c == '#' && (i == 0 || chars[i - 1].is_whitespace()) {
                    // A comment: copied as it is, never interpolated.
                    let rest: String = chars[i..].iter().collect();
                    out.push_str(&rest);
                    return;
                }
                if (c == '"' || c == '\'') && starts_scalar(prev, space_since_prev) {
                    quote = Some(if c == '"' { Quote::Double } else { Quote::Single });
                }
                match c {
                    '[' | '{' => flow_depth += 1,
                    ']' | '}' => flow_depth = flow_depth.saturating_sub(1),
                    _ => {}
                }
                if c.is_whitespace() {
                    space_since_prev = true;
                } else {
                    prev = Some(c);
                    space_since_prev = false;
                }
            }
            Some(Quote::Double) => {
                if c == '\\' {
                    if let Some(&next) = chars.get(i + 1)
                        && next != '\n'
                    {
                        out.push(c);
                        out.push(next);
                        out_col += 2;
                        i += 2;
                        continue;
                    }
                } else if c == '"' {
                    quote = None;
                    prev = Some('"');
                    space_since_prev = false;
                }
            }
            Some(Quote::Single) => {
                if c == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        out.push_str("''");
                        out_col += 2;
                        i += 2;
                        continue;
                    }
                    quote = None;
                    prev = Some('\'');
                    space_since_prev = false;
                }
            }
        }
        out.push(c);
        out_col += 1;
        i += 1;
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Looks the variable up; returns its name and value, or the message of the problem.
fn resolve(inner: &str, reference: &str, env: EnvLookup<'_>) -> Result<(String, String), String> {
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    if !valid_name(name) {
        return Err(format!(
            "invalid variable reference `{reference}`: write ${{NAME}} or ${{NAME:-default}} with NAME made of \
             letters, digits and `_` (and `$${{` for a literal `${{`)"
        ));
    }
    let value = match (env(name), default) {
        (Some(v), Some(d)) if v.is_empty() => d.to_string(),
        (Some(v), _) => v,
        (None, Some(d)) => d.to_string(),
        (None, None) => return Err(format!("environment variable {name} is not set (used in {reference})")),
    };
    if value.contains(['\n', '\r']) {
        return Err(format!(
            "the value of {name} contains a line break, which cannot be substituted into the file (used in {reference})"
        ));
    }
    Ok((name.to_string(), value))
}

/// Makes `value` safe for where it lands; never quotes the value in a message (it may be secret).
fn escape(name: &str, value: &str, quote: Option<Quote>, at_start: bool, in_flow: bool) -> Result<String, String> {
    match quote {
        Some(Quote::Double) => Ok(value.replace('\\', "\\\\").replace('"', "\\\"")),
        Some(Quote::Single) => Ok(value.replace('\'', "''")),
        None => match plain_problem(value, at_start, in_flow) {
            None => Ok(value.to_string()),
            Some(why) => Err(format!(
                "the value of {name} {why}, which YAML would read differently in an unquoted value; \
                 quote the reference, e.g. \"${{{name}}}\""
            )),
        },
    }
}

fn plain_problem(value: &str, at_start: bool, in_flow: bool) -> Option<&'static str> {
    if value.contains(": ") || value.ends_with(':') {
        return Some("contains `: `");
    }
    if value.contains(" #") {
        return Some("contains ` #`");
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Some("has leading or trailing spaces");
    }
    if in_flow && value.contains([',', '[', ']', '{', '}']) {
        return Some("contains one of `,[]{}` inside a flow collection");
    }
    if at_start
        && (value.starts_with([
            '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`',
        ]) || value.starts_with("- ")
            || value.starts_with("? ")
            || value == "-"
            || value == "?")
    {
        return Some("starts with a YAML indicator");
    }
    None
}

/// Every interpolation problem of `text` (unset variables first of all), without parsing YAML.
pub(crate) fn problems(file: &Path, text: &str, env: EnvLookup<'_>) -> Vec<ConfigError> {
    match interpolate(file, text, env) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            "QUOTE" => Some("a\"b\\c'd".into()),
            "COLON" => Some("a: b".into()),
            "STAR" => Some("*x".into()),
            "LIST" => Some("a,b".into()),
            "NL" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<Interpolated, Vec<ConfigError>> {
        interpolate(Path::new("p.yaml"), text, &env)
    }

    fn messages(text: &str) -> Vec<String> {
        run(text).unwrap_err().into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn substitutes_and_defaults() {
        let r = run("url: https://${HOST}/x\nout: ${NOPE:-./data}/m\ne: ${EMPTY:-dflt}\nf: '${EMPTY}'\n").unwrap();
        assert_eq!(r.text, "url: https://example.com/x\nout: ./data/m\ne: dflt\nf: ''\n");
    }

    #[test]
    fn dollar_dollar_escapes() {
        let r = run("a: $${HOST} and $$x and $HOST\n").unwrap();
        assert_eq!(r.text, "a: ${HOST} and $$x and $HOST\n");
    }

    #[test]
    fn reports_every_missing_variable_at_its_dollar() {
        let m = messages("a: ${ONE}\nb: x ${TWO} ${HOST} ${THREE}\n");
        assert_eq!(
            m,
            vec![
                "p.yaml:1:4: environment variable ONE is not set (used in ${ONE})",
                "p.yaml:2:6: environment variable TWO is not set (used in ${TWO})",
                "p.yaml:2:21: environment variable THREE is not set (used in ${THREE})",
            ]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let m = messages("a: \"héllo ${ONE}\"\n");
        assert_eq!(
            m,
            vec!["p.yaml:1:11: environment variable ONE is not set (used in ${ONE})"]
        );
    }

    #[test]
    fn comments_are_not_interpolated() {
        let r = run("# url: ${OLD}\na: b # ${OLD}\nc: \"x # ${HOST}\"\nd: x#${HOST}\n").unwrap();
        assert_eq!(
            r.text,
            "# url: ${OLD}\na: b # ${OLD}\nc: \"x # example.com\"\nd: x#example.com\n"
        );
    }

    #[test]
    fn values_are_escaped_inside_quotes() {
        let r = run("a: \"${QUOTE}\"\nb: '${QUOTE}'\n").unwrap();
        assert_eq!(r.text, "a: \"a\\\"b\\\\c'd\"\nb: 'a\"b\\c''d'\n");
        let v: std::collections::BTreeMap<String, String> = serde_norway::from_str(&r.text).unwrap();
        assert_eq!(v["a"], "a\"b\\c'd");
        assert_eq!(v["b"], "a\"b\\c'd");
    }

    #[test]
    fn unsafe_plain_values_ask_for_quotes() {
        let m = messages("a: ${COLON}\nb: ${STAR}\nc: [${LIST}]\nd: x${STAR}\ne: \"${COLON}\"\n");
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(
            m[0].starts_with("p.yaml:1:4: the value of COLON contains `: `"),
            "{}",
            m[0]
        );
        assert!(m[0].ends_with("quote the reference, e.g. \"${COLON}\""), "{}", m[0]);
        assert!(
            m[1].starts_with("p.yaml:2:4: the value of STAR starts with a YAML indicator"),
            "{}",
            m[1]
        );
        assert!(
            m[2].starts_with("p.yaml:3:5: the value of LIST contains one of `,[]{}`"),
            "{}",
            m[2]
        );
    }

    #[test]
    fn line_breaks_and_bad_syntax_are_rejected() {
        let m = messages("a: ${NL}\nb: ${1X}\nc: ${HOST\n");
        assert_eq!(
            m,
            vec![
                "p.yaml:1:4: the value of NL contains a line break, which cannot be substituted into the file (used in ${NL})",
                "p.yaml:2:4: invalid variable reference `${1X}`: write ${NAME} or ${NAME:-default} with NAME made of letters, digits and `_` (and `$${` for a literal `${`)",
                "p.yaml:3:4: unterminated `${` (no `}` on this line); write `$${` for a literal `${`",
            ]
        );
    }

    #[test]
    fn positions_map_back_across_substitutions() {
        // "a: ${HOST} x" -> "a: example.com x": the `x` moves from column 12 to 17.
        let r = run("a: ${HOST} x $${y}z\nb: 1\n").unwrap();
        assert_eq!(r.text, "a: example.com x ${y}z\nb: 1\n");
        assert_eq!(r.original_position(1, 1), (1, 1));
        assert_eq!(r.original_position(1, 4), (1, 4));
        assert_eq!(r.original_position(1, 10), (1, 4)); // inside the value -> the `$`
        assert_eq!(r.original_position(1, 16), (1, 12));
        assert_eq!(r.original_position(1, 22), (1, 19)); // the `z` after the escape
        assert_eq!(r.original_position(2, 4), (2, 4));
    }
}
