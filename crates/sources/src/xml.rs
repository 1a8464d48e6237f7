//! Small control-plane XML helpers: pulling one element's text out of a response without
//! decoding the records (the records are decoded once, by `etl-formats`).

use memchr::memmem;

/// The unescaped text of the first `<name>...</name>` element, if any. `name` is a local name
/// without prefix; the vendor APIs that use this do not use namespaces in these elements.
pub fn element_text(body: &[u8], name: &str) -> Result<Option<String>, String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let Some(start) = memmem::rfind(body, open.as_bytes()) else {
        return Ok(None);
    };
    let from = start + open.len();
    let Some(len) = memmem::find(&body[from..], close.as_bytes()) else {
        return Err(format!("<{name}> is not closed"));
    };
    let raw = std::str::from_utf8(&body[from..from + len]).map_err(|e| format!("<{name}> is not UTF-8: {e}"))?;
    let text = quick_xml::escape::unescape(raw).map_err(|e| format!("<{name}>: {e}"))?;
    Ok(Some(text.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_unescapes() {
        let body = b"<a><Code>Bad&amp;Worse</Code><Message>m</Message></a>";
        assert_eq!(element_text(body, "Code").unwrap().as_deref(), Some("Bad&Worse"));
        assert_eq!(element_text(body, "Nope").unwrap(), None);
        assert!(element_text(b"<Code>x", "Code").is_err());
    }
}
