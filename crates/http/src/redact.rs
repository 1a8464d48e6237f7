//! Keeping secrets out of logs and error messages.
//!
//! Secrets travel in places a log line loves to print: a token in a URL path, a signature in a
//! query string (`?sign=...&expire=...` on a pre-signed download), a password in userinfo, or an
//! error body that echoes the request. Everything the client logs or returns as text goes
//! through a [`Redactor`], which knows the pipeline's secrets (as given, and URL-encoded as they
//! appear on the wire) and the query parameter names that carry credentials.

use std::fmt;
use std::sync::{Arc, RwLock};

use etl_core::Secret;

/// What replaces a secret.
pub const MASK: &str = "***";

/// The shortest secret [`Redactor::learn`] accepts, in characters.
pub const MIN_LEARNED: usize = 8;

/// Replaces known secrets and credential-looking URL parts with `***`. Cheap to clone; clones
/// share what they know, secrets [learned](Redactor::learn) later included.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every form of every secret, longest first so that a secret containing another is masked whole.
    needles: Arc<RwLock<Vec<String>>>,
}

/// The forms a secret takes in text: as given, as a query or form value (`+` for space, `%XX`
/// for the rest) and as a path segment.
fn forms(raw: &str) -> Vec<String> {
    let mut out = vec![
        raw.to_string(),
        url::form_urlencoded::byte_serialize(raw.as_bytes()).collect(),
    ];
    out.extend(path_segment(raw));
    out
}

fn sort(needles: &mut Vec<String>) {
    needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    needles.dedup();
}

impl Redactor {
    /// A redactor for these secrets; empty ones are ignored (they would match everywhere).
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        let mut needles = Vec::new();
        for secret in secrets {
            let raw = secret.expose();
            if !raw.is_empty() {
                needles.extend(forms(raw));
            }
        }
        sort(&mut needles);
        Self {
            needles: Arc::new(RwLock::new(needles)),
        }
    }

    /// Adds a secret met while running, for this redactor and every clone of it: a capability
    /// a server hands out, such as the token in the path of a pre-signed download URL
    /// (`.../download/fOFrjyw7I`), which no query-parameter rule can recognise. Values shorter
    /// than [`MIN_LEARNED`] characters are ignored: masking them would mangle ordinary text.
    pub fn learn(&self, secret: &Secret) {
        let raw = secret.expose();
        if raw.chars().count() < MIN_LEARNED {
            return;
        }
        let mut needles = self.needles.write().unwrap_or_else(|e| e.into_inner());
        if needles.iter().any(|n| n == raw) {
            return;
        }
        needles.extend(forms(raw));
        sort(&mut needles);
    }

    /// `text` with every secret value (and its URL-encoded forms) replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in self.needles.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), MASK);
            }
        }
        out
    }

    /// [`Redactor::redact`], plus: the values of query parameters whose name looks like a
    /// credential (see [`is_sensitive_param`]) and the userinfo password become `***`.
    pub fn redact_url(&self, url: &str) -> String {
        let masked = match url::Url::parse(url) {
            Ok(mut parsed) => {
                if parsed.password().is_some() {
                    // Only fails for URLs that cannot have a password, which this one has.
                    let _ = parsed.set_password(Some(MASK));
                }
                if let Some(query) = parsed.query() {
                    let query = redact_query(query);
                    parsed.set_query(Some(&query));
                }
                parsed.to_string()
            }
            // Not a URL we can parse: still mask a query string if it has one.
            Err(_) => match url.split_once('?') {
                Some((base, query)) => format!("{base}?{}", redact_query(query)),
                None => url.to_string(),
            },
        };
        self.redact(&masked)
    }
}

/// `raw` encoded as one URL path segment, the way `url` encodes it.
fn path_segment(raw: &str) -> Option<String> {
    let mut u = url::Url::parse("http://h/").ok()?;
    u.path_segments_mut().ok()?.push(raw);
    Some(u.path()[1..].to_string())
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns = self.needles.read().unwrap_or_else(|e| e.into_inner()).len();
        f.debug_struct("Redactor").field("patterns", &patterns).finish()
    }
}

/// Whether a query parameter carries a credential: its name (case-insensitive) contains `sign`,
/// `sig`, `token`, `key`, `secret`, `password`, `auth`, `credential` or `expire`, or starts with
/// `x-amz-`. An expiry is masked too: with the signature it dates a leaked URL's usefulness.
pub fn is_sensitive_param(name: &str) -> bool {
    const PARTS: [&str; 9] = [
        "sign",
        "sig",
        "token",
        "key",
        "secret",
        "password",
        "auth",
        "credential",
        "expire",
    ];
    let lower = name.to_ascii_lowercase();
    PARTS.iter().any(|p| lower.contains(p)) || lower.starts_with("x-amz-")
}

/// Masks the values of sensitive parameters, keeping the rest of the query byte for byte.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => {
                let decoded: String = url::form_urlencoded::parse(name.as_bytes())
                    .next()
                    .map(|(n, _)| n.into_owned())
                    .unwrap_or_else(|| name.to_string());
                if is_sensitive_param(&decoded) {
                    format!("{name}={MASK}")
                } else {
                    pair.to_string()
                }
            }
            None => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets_and_their_encodings() {
        let r = Redactor::new([Secret::new("a b/c+d"), Secret::new(""), Secret::new("tok123")]);
        assert_eq!(r.redact("token tok123 and a b/c+d"), "token *** and ***");
        assert_eq!(r.redact("form: a+b%2Fc%2Bd"), "form: ***");
        assert_eq!(r.redact("path: /x/a%20b%2Fc+d/y"), "path: /x/***/y");
        assert_eq!(r.redact("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn empty_redactor_changes_nothing() {
        let r = Redactor::default();
        assert_eq!(r.redact("abc"), "abc");
        assert_eq!(r.redact_url("https://h/x?x=1"), "https://h/x?x=1");
    }

    #[test]
    fn masks_credential_query_parameters_and_passwords() {
        let r = Redactor::new([Secret::new("tok123")]);
        assert_eq!(
            r.redact_url("https://cdn.example.com/files/tok123/log.gz?sign=abc&expire=1&x=1"),
            "https://cdn.example.com/files/***/log.gz?sign=***&expire=***&x=1"
        );
        assert_eq!(
            r.redact_url("https://s3.example.com/b/k?X-Amz-Signature=ff&X-Amz-Date=1&Key-Pair-Id=9&Signature=z&page=2"),
            "https://s3.example.com/b/k?X-Amz-Signature=***&X-Amz-Date=***&Key-Pair-Id=***&Signature=***&page=2"
        );
        assert_eq!(
            r.redact_url("https://u:hunter2@dav.example.com/a"),
            "https://u:***@dav.example.com/a"
        );
        assert_eq!(
            r.redact_url("https://h/?access_token=q&auth=1&flag"),
            "https://h/?access_token=***&auth=***&flag"
        );
        assert_eq!(r.redact_url("not a url?apikey=zz&n=1"), "not a url?apikey=***&n=1");
    }

    #[test]
    fn sensitive_names() {
        for name in [
            "sign",
            "Signature",
            "sig",
            "token",
            "NextToken",
            "apikey",
            "client_secret",
            "password",
            "Authorization",
            "X-Amz-Credential",
            "Expires",
            "x-amz-date",
        ] {
            assert!(is_sensitive_param(name), "{name}");
        }
        for name in ["x", "page", "start", "domain", "limit"] {
            assert!(!is_sensitive_param(name), "{name}");
        }
    }

    #[test]
    fn secrets_learned_later_are_masked_by_every_clone() {
        let r = Redactor::new([Secret::new("tok123")]);
        let clone = r.clone();
        let url = "http://h/auditLogDownload/V201812/download/lpEbBaYJwrCwfSxNcYDvdM64";
        assert_eq!(r.redact_url(url), url, "a path token is not recognisable by itself");
        clone.learn(&Secret::new("lpEbBaYJwrCwfSxNcYDvdM64"));
        clone.learn(&Secret::new("lpEbBaYJwrCwfSxNcYDvdM64"));
        assert_eq!(r.redact_url(url), "http://h/auditLogDownload/V201812/download/***");
        assert_eq!(r.redact("tok123 and lpEbBaYJwrCwfSxNcYDvdM64"), "*** and ***");
        // Too short to mask safely: ignored.
        r.learn(&Secret::new("abc"));
        assert_eq!(r.redact("abc"), "abc");
        assert_eq!(format!("{r:?}"), "Redactor { patterns: 2 }");
    }

    #[test]
    fn debug_shows_no_secret() {
        let r = Redactor::new([Secret::new("hunter2")]);
        let s = format!("{r:?}");
        assert!(!s.contains("hunter2"), "{s}");
    }
}
