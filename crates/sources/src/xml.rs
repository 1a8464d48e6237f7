//! Small control-plane XML helpers: pulling one element's text out of a response without
//! decoding the records (the records are decoded once, by `etl-formats`).

use memchr::memmem;

/// The unescaped text of the last `<name>...</name>` element, if any (a page's `NextToken`
/// follows its records). `name` is a local name: the element may carry a prefix (`<a:name>`),
/// attributes (`xmlns="..."`) or be empty (`<name/>`, text ""), and its text may be a CDATA
/// section. A tag missed here would end a token chain early and lose the rest of the window
/// without an error, so the record decoder's leniency is matched.
pub fn element_text(body: &[u8], name: &str) -> Result<Option<String>, String> {
    let Some((qname, after_open, empty)) = last_start_tag(body, name) else {
        return Ok(None);
    };
    if empty {
        return Ok(Some(String::new()));
    }
    let close = format!("</{qname}");
    let mut from = after_open;
    let len = loop {
        let Some(at) = memmem::find(&body[from..], close.as_bytes()) else {
            return Err(format!("<{qname}> is not closed"));
        };
        let end = from + at + close.len();
        let rest = &body[end..];
        let ws = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if rest.get(ws) == Some(&b'>') {
            break from + at - after_open;
        }
        from = end;
    };
    let raw =
        std::str::from_utf8(&body[after_open..after_open + len]).map_err(|e| format!("<{qname}> is not UTF-8: {e}"))?;
    if let Some(inner) = raw.trim().strip_prefix("<![CDATA[").and_then(|r| r.strip_suffix("]]>")) {
        return Ok(Some(inner.to_string()));
    }
    let text = quick_xml::escape::unescape(raw).map_err(|e| format!("<{qname}>: {e}"))?;
    Ok(Some(text.into_owned()))
}

/// Whether the body has a start tag of local name `name`, with or without a prefix; searched
/// from the start (a response's root is at its start).
pub fn has_start_tag(body: &[u8], name: &str) -> bool {
    memmem::find_iter(body, name.as_bytes()).any(|at| start_tag_at(body, at, name).is_some())
}

/// The last start tag of local name `name`: its qualified name as written, the offset after
/// its `>`, and whether it is an empty-element tag.
fn last_start_tag<'a>(body: &'a [u8], name: &str) -> Option<(&'a str, usize, bool)> {
    let mut before = body.len();
    while let Some(at) = memmem::rfind(&body[..before], name.as_bytes()) {
        if let Some(tag) = start_tag_at(body, at, name) {
            return Some(tag);
        }
        before = at;
    }
    None
}

/// The start tag whose local name `name` is at `at`, if that occurrence is one: preceded by
/// `<` or `<prefix:`, followed by `>`, `/` or whitespace.
fn start_tag_at<'a>(body: &'a [u8], at: usize, name: &str) -> Option<(&'a str, usize, bool)> {
    let is_name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let after = at + name.len();
    if !matches!(body.get(after), Some(b'>' | b'/' | b' ' | b'\t' | b'\r' | b'\n')) {
        return None;
    }
    let open = match at.checked_sub(1).map(|i| body[i]) {
        Some(b'<') => at - 1,
        Some(b':') => {
            let prefix = body[..at - 1].iter().rev().take_while(|&&b| is_name_byte(b)).count();
            let lt = at - 1 - prefix;
            if prefix == 0 || lt == 0 || body[lt - 1] != b'<' {
                return None;
            }
            lt - 1
        }
        _ => return None,
    };
    let gt = after + memchr::memchr(b'>', &body[after..])?;
    let qname = std::str::from_utf8(&body[open + 1..after]).ok()?;
    Some((qname, gt + 1, body[gt - 1] == b'/'))
}

/// One element of a small control-plane document (a SOAP response, a WebDAV multistatus),
/// with its namespace resolved. Vendors vary their prefixes, even swap them between request
/// and response, so elements are found by namespace URI and local name, never by prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// The namespace URI, `None` for an unqualified element.
    pub ns: Option<String>,
    pub local: String,
    /// The element's own text (entities resolved, outer whitespace trimmed).
    pub text: String,
    pub children: Vec<Element>,
}

/// The most elements a control-plane document may hold: a listing is small; anything bigger
/// is not what the API documents.
const MAX_ELEMENTS: usize = 200_000;

/// The deepest nesting a control-plane document may have. A SOAP response or a multistatus is
/// at most about ten levels deep; the cap keeps the tree (and every recursive walk of it, its
/// drop included) far from the stack's limit whatever a hostile server sends.
pub const MAX_DEPTH: usize = 64;

impl Element {
    /// Parses a whole document into its root element.
    ///
    /// Refused, with the byte offset: a document that is not UTF-8, is not well-formed, nests
    /// deeper than [`MAX_DEPTH`], holds more than 200,000 elements, or has a DOCTYPE. No DTD is
    /// ever read or fetched and no entity but XML's five predefined ones and character references
    /// is expanded: SOAP forbids a DTD in a message, a WebDAV server has no use for one, and a
    /// declared entity is how a response would make a parser read a local file (`SYSTEM
    /// "file:///etc/passwd"`), reach a URL, or expand a billion laughs.
    pub fn parse(body: &[u8]) -> Result<Element, String> {
        use quick_xml::NsReader;
        use quick_xml::events::Event;
        use quick_xml::name::ResolveResult;

        let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
        let mut reader = NsReader::from_str(text);
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        let mut count = 0usize;
        loop {
            let pos = reader.buffer_position();
            let (ns, event) = reader
                .read_resolved_event()
                .map_err(|e| format!("at byte {pos}: {e}"))?;
            let ns = match ns {
                ResolveResult::Bound(n) => Some(n.0.to_string()),
                ResolveResult::Unbound => None,
                ResolveResult::Unknown(p) => {
                    if matches!(event, Event::Start(_) | Event::Empty(_)) {
                        return Err(format!("at byte {pos}: undeclared namespace prefix `{p}`"));
                    }
                    None
                }
            };
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    count += 1;
                    if count > MAX_ELEMENTS {
                        return Err(format!("more than {MAX_ELEMENTS} elements"));
                    }
                    let el = Element {
                        ns,
                        local: e.local_name().as_ref().to_string(),
                        ..Default::default()
                    };
                    if stack.len() >= MAX_DEPTH {
                        return Err(format!(
                            "at byte {pos}: <{}> is nested more than {MAX_DEPTH} elements deep",
                            el.local
                        ));
                    }
                    if matches!(event, Event::Empty(_)) {
                        match stack.last_mut() {
                            Some(parent) => parent.children.push(el),
                            None => root = Some(el),
                        }
                    } else {
                        stack.push(el);
                    }
                }
                Event::End(_) => {
                    let mut el = stack.pop().ok_or("an end tag without a start")?;
                    el.text = el.text.trim().to_string();
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
                Event::Text(t) => {
                    if let Some(el) = stack.last_mut() {
                        el.text.push_str(&t.xml10_content());
                    }
                }
                Event::CData(t) => {
                    if let Some(el) = stack.last_mut() {
                        el.text.push_str(&t.xml10_content());
                    }
                }
                Event::GeneralRef(r) => {
                    if let Some(el) = stack.last_mut() {
                        match r.resolve_char_ref().map_err(|e| format!("at byte {pos}: {e}"))? {
                            Some(c) => el.text.push(c),
                            None => {
                                let name: &str = r.as_ref();
                                let v = quick_xml::escape::resolve_xml_entity(name)
                                    .ok_or_else(|| format!("at byte {pos}: unknown entity `&{name};`"))?;
                                el.text.push_str(v);
                            }
                        }
                    }
                }
                Event::DocType(_) => {
                    return Err(format!(
                        "at byte {pos}: the document has a DOCTYPE declaration; a DTD (and any entity it \
                         declares) is not accepted in a response"
                    ));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !stack.is_empty() {
            return Err(format!("the document ends inside <{}>", stack[stack.len() - 1].local));
        }
        root.ok_or_else(|| "no root element".to_string())
    }

    /// Whether this element is `local` in namespace `ns`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == Some(ns)
    }

    /// The first direct child `local` in namespace `ns`.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    /// The first direct child with this local name in any of `namespaces`.
    pub fn child_in(&self, namespaces: &[&str], local: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.local == local && c.ns.as_deref().is_some_and(|n| namespaces.contains(&n)))
    }

    /// Every descendant (depth first, self included) that is `local` in namespace `ns`.
    pub fn find_all<'a>(&'a self, ns: &str, local: &str, out: &mut Vec<&'a Element>) {
        if self.is(ns, local) {
            out.push(self);
        }
        for c in &self.children {
            c.find_all(ns, local, out);
        }
    }

    /// The first descendant (self included) with this local name and no namespace or any.
    pub fn find_local(&self, local: &str) -> Option<&Element> {
        if self.local == local {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find_local(local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_whatever_the_prefixes() {
        let a = br#"<x:Envelope xmlns:x="urn:env" xmlns="urn:common" xmlns:y="urn:audit"><x:Body>
            <y:rval><ok>true</ok><y:name>A &amp; B &#x41;</y:name><y:empty/></y:rval></x:Body></x:Envelope>"#;
        let b = br#"<Envelope xmlns="urn:env"><Body><a:rval xmlns:a="urn:audit" xmlns:c="urn:common">
            <c:ok>true</c:ok><a:name><![CDATA[A & B ]]>A</a:name><a:empty></a:empty></a:rval></Body></Envelope>"#;
        for doc in [&a[..], &b[..]] {
            let root = Element::parse(doc).unwrap();
            assert!(root.is("urn:env", "Envelope"));
            let rval = root
                .child("urn:env", "Body")
                .unwrap()
                .child("urn:audit", "rval")
                .unwrap();
            assert_eq!(rval.child("urn:common", "ok").unwrap().text, "true");
            assert_eq!(rval.child("urn:audit", "name").unwrap().text, "A & B A");
            assert!(rval.child("urn:audit", "empty").is_some());
            let mut all = Vec::new();
            root.find_all("urn:audit", "name", &mut all);
            assert_eq!(all.len(), 1);
        }
        assert!(Element::parse(b"<a><b></a>").is_err());
        assert!(
            Element::parse(b"<p:a/>")
                .unwrap_err()
                .contains("undeclared namespace prefix")
        );
        assert!(Element::parse(b"<a>").unwrap_err().contains("ends inside <a>"));
    }

    #[test]
    fn finds_and_unescapes() {
        let body = b"<a><Code>Bad&amp;Worse</Code><Message>m</Message></a>";
        assert_eq!(element_text(body, "Code").unwrap().as_deref(), Some("Bad&Worse"));
        assert_eq!(element_text(body, "Nope").unwrap(), None);
        assert!(element_text(b"<Code>x", "Code").is_err());
    }

    #[test]
    fn finds_a_prefixed_attributed_empty_or_cdata_element() {
        let cases: [(&[u8], Option<&str>); 8] = [
            (b"<r><NextToken>a+b/c=</NextToken></r>", Some("a+b/c=")),
            (b"<r><NextToken xmlns=\"urn:x\">tok</NextToken></r>", Some("tok")),
            (b"<r xmlns:m=\"urn:x\"><m:NextToken>tok</m:NextToken ></r>", Some("tok")),
            (b"<r><NextToken><![CDATA[a<b&c]]></NextToken></r>", Some("a<b&c")),
            (b"<r><NextToken/></r>", Some("")),
            (b"<r><NextToken /></r>", Some("")),
            // Other elements whose name ends or starts with it are not it.
            (b"<r><MyNextToken>x</MyNextToken><NextTokenX>y</NextTokenX></r>", None),
            // The last one counts: a page's token follows its records.
            (b"<r><NextToken>1</NextToken><NextToken>2</NextToken></r>", Some("2")),
        ];
        for (body, want) in cases {
            let got = element_text(body, "NextToken").unwrap();
            assert_eq!(got.as_deref(), want, "{}", String::from_utf8_lossy(body));
        }
        assert!(element_text(b"<r><a:NextToken>x</b:NextToken></r>", "NextToken").is_err());
        assert!(has_start_tag(
            b"<ns:GetDeliveryLogResponse xmlns:ns=\"u\">",
            "GetDeliveryLogResponse"
        ));
        assert!(has_start_tag(b"<GetDeliveryLogResponse>", "GetDeliveryLogResponse"));
        assert!(!has_start_tag(b"</GetDeliveryLogResponse>", "GetDeliveryLogResponse"));
    }

    /// A listener nobody connects to unless the parser fetches what the document points at;
    /// `connections` tells after the fact (a connect completes into the backlog even unaccepted).
    struct Canary(std::net::TcpListener);

    impl Canary {
        fn new() -> Self {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            Canary(l)
        }

        fn url(&self) -> String {
            format!("http://{}/x.dtd", self.0.local_addr().unwrap())
        }

        fn connections(&self) -> usize {
            std::iter::from_fn(|| self.0.accept().ok()).count()
        }
    }

    #[test]
    fn a_doctype_is_refused_and_no_entity_is_ever_read_or_fetched() {
        let dir = std::env::temp_dir().join(format!("etl-xml-entity-{}", std::process::id()));
        std::fs::write(&dir, "SECRET-FILE-CONTENT").unwrap();
        let canary = Canary::new();
        let file = format!("file://{}", dir.display());
        let docs = [
            format!(r#"<!DOCTYPE x [<!ENTITY e SYSTEM "{file}">]><x>&e;</x>"#),
            r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#.to_string(),
            format!(r#"<!DOCTYPE x [<!ENTITY e SYSTEM "{}">]><x>&e;</x>"#, canary.url()),
            format!(r#"<!DOCTYPE x SYSTEM "{}"><x>a</x>"#, canary.url()),
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><x>&lol2;</x>"#
                .to_string(),
        ];
        for doc in &docs {
            let err = Element::parse(doc.as_bytes()).unwrap_err();
            assert!(err.contains("DOCTYPE declaration"), "{doc}: {err}");
            assert!(!err.contains("SECRET") && !err.contains("root:"), "{err}");
        }
        // Without a DOCTYPE, a reference to an entity nobody declared is an error that names it.
        let err = Element::parse(b"<x>a &e; b</x>").unwrap_err();
        assert!(err.contains("unknown entity `&e;`"), "{err}");
        assert_eq!(canary.connections(), 0, "the parser never connects anywhere");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn nesting_is_capped_without_recursion_or_a_stack_overflow() {
        let deep = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        let ok = Element::parse(deep(MAX_DEPTH).as_bytes()).unwrap();
        let mut depth = 0;
        let mut e = &ok;
        while let Some(c) = e.children.first() {
            depth += 1;
            e = c;
        }
        assert_eq!(depth, MAX_DEPTH - 1);
        for n in [MAX_DEPTH + 1, 10_000] {
            let err = Element::parse(deep(n).as_bytes()).unwrap_err();
            assert!(
                err.contains(&format!("nested more than {MAX_DEPTH} elements deep")),
                "{err}"
            );
            assert!(err.starts_with(&format!("at byte {}:", 3 * MAX_DEPTH)), "{err}");
        }
        // Self-closing children count too, and an unclosed 10,000-deep prefix is refused the same.
        let empty = format!("{}<b/>{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(Element::parse(empty.as_bytes()).unwrap_err().contains("<b> is nested"));
        assert!(Element::parse("<a>".repeat(10_000).as_bytes()).is_err());
    }
}
