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
