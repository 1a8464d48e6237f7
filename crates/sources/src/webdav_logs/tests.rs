use super::{ListingError, archive_epoch, parse_multistatus};

/// A listing shaped like the seed's sample: every element in the default `DAV:` namespace,
/// `prop` before `status`, the collection itself first, absolute hrefs.
fn listing(hrefs: &[&str]) -> String {
    let mut out = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><multistatus xmlns="DAV:" xmlns:p="urn:x-personium:xmlns">
<response><href>https://cell1.unit1.example/__log/archive</href><propstat><prop>
<creationdate>2017-02-03T01:27:31.093+0000</creationdate><getlastmodified>Fri, 03 Feb 2017 01:27:31 GMT</getlastmodified>
<resourcetype><collection/></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat></response>"#,
    );
    for h in hrefs {
        out.push_str(&format!(
            r#"<response><href>{h}</href><propstat><prop><creationdate>2025-11-18T00:49:30.870+0000</creationdate>
<getcontentlength>1234</getcontentlength><getcontenttype>text/csv</getcontenttype>
<getlastmodified>Tue, 18 Nov 2025 00:49:30 GMT</getlastmodified><resourcetype/></prop>
<status>HTTP/1.1 200 OK</status></propstat></response>"#
        ));
    }
    out.push_str("</multistatus>");
    out
}

fn collection() -> url::Url {
    url::Url::parse("https://cell1.unit1.example/__log/archive").unwrap()
}

#[test]
fn lists_files_and_skips_the_collection() {
    let body = listing(&[
        "https://cell1.unit1.example/__log/archive/default.log.1731900000000.zip",
        "https://cell1.unit1.example/__log/archive/default.log.1731800000000",
    ]);
    let files = parse_multistatus(body.as_bytes(), &collection()).unwrap();
    let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["default.log.1731900000000.zip", "default.log.1731800000000"]);
    assert_eq!(files[0].length, Some(1234));
    assert_eq!(files[0].content_type.as_deref(), Some("text/csv"));
    assert_eq!(files[0].created.unwrap().to_rfc3339(), "2025-11-18T00:49:30.870+00:00");
    assert_eq!(archive_epoch("default.log.1731900000000.zip"), Some(1_731_900_000_000));
    assert_eq!(archive_epoch("default.log.1731800000000"), Some(1_731_800_000_000));
    assert_eq!(archive_epoch("default.log"), None);
    assert_eq!(archive_epoch("default.log.12x"), None);
}

#[test]
fn hrefs_outside_the_collection_are_refused() {
    for evil in [
        "https://other.unit1.example/__log/archive/default.log.1",
        "https://cell1.unit1.example/other-cell/__log/archive/default.log.1",
        "https://cell1.unit1.example/__log/archive/%2e%2e/%2e%2e/secret",
        "https://cell1.unit1.example/__log/archive/../current/default.log",
        "https://cell1.unit1.example/__log/archive/sub/default.log.1",
        "http://cell1.unit1.example/__log/archive/default.log.1",
    ] {
        let body = listing(&[evil]);
        match parse_multistatus(body.as_bytes(), &collection()) {
            Err(ListingError::Unsafe { href, .. }) => assert_eq!(href, evil),
            other => panic!("{evil}: {other:?}"),
        }
    }
    // A relative href inside the collection is fine.
    let body = listing(&["/__log/archive/default.log.1"]);
    let files = parse_multistatus(body.as_bytes(), &collection()).unwrap();
    assert_eq!(
        files[0].url.as_str(),
        "https://cell1.unit1.example/__log/archive/default.log.1"
    );
    assert!(matches!(
        parse_multistatus(b"<html/>", &collection()),
        Err(ListingError::Malformed(_))
    ));
}

#[test]
fn hostile_hrefs_are_refused_naming_the_href() {
    let cases = [
        (
            "https://cell1.unit1.example/__log/archive/%2e%2e/%2e%2e/etc/passwd",
            "encoded dot-segments or separators",
        ),
        (
            "https://cell1.unit1.example/__log/archive/..%2Fcurrent%2Fdefault.log",
            "encoded dot-segments or separators",
        ),
        ("/etc/passwd", "not under the collection"),
        ("file:///etc/passwd", "another origin"),
        ("//evil.example/__log/archive/default.log.1", "another origin"),
        (
            "https://cell1.unit1.example/__log/archive/default.log.1%00.zip",
            "a control character such as NUL, raw or percent-encoded",
        ),
        (
            "https://cell1.unit1.example/__log/archive/default.log.1%0A",
            "a control character such as NUL, raw or percent-encoded",
        ),
        (
            "https://cell1.unit1.example/__log/archive/%252e%252e",
            "its file name `%2e%2e` is not a plain file name: a percent-encoded dot, separator or NUL",
        ),
    ];
    for (evil, why) in cases {
        match parse_multistatus(listing(&[evil]).as_bytes(), &collection()) {
            Err(ListingError::Unsafe { href, reason }) => {
                assert_eq!((href.as_str(), reason.as_str()), (evil, why));
            }
            other => panic!("{evil}: {other:?}"),
        }
    }
    // A raw control character (here a tab, which XML allows in text) is shown escaped.
    let body = listing(&["https://cell1.unit1.example/__log/archive/default.log.1\u{9}x"]);
    match parse_multistatus(body.as_bytes(), &collection()) {
        Err(ListingError::Unsafe { href, .. }) => {
            assert_eq!(href, "https://cell1.unit1.example/__log/archive/default.log.1\\u{9}x");
        }
        other => panic!("{other:?}"),
    }
    // XML 1.0 has no NUL character, not even as a reference: the listing itself is refused.
    let body = listing(&["https://cell1.unit1.example/__log/archive/default.log.1&#0;"]);
    assert!(matches!(
        parse_multistatus(body.as_bytes(), &collection()),
        Err(ListingError::Malformed(_)) | Err(ListingError::Unsafe { .. })
    ));
}

#[test]
fn a_listing_with_a_doctype_or_deep_nesting_is_malformed() {
    let files = "https://cell1.unit1.example/__log/archive/default.log.1";
    for entity in ["file:///etc/passwd", "http://127.0.0.1:9/evil.dtd"] {
        let body = listing(&[&format!("{files}&e;")]).replacen(
            "<multistatus",
            &format!("<!DOCTYPE multistatus [<!ENTITY e SYSTEM \"{entity}\">]><multistatus"),
            1,
        );
        match parse_multistatus(body.as_bytes(), &collection()) {
            Err(ListingError::Malformed(reason)) => assert!(reason.contains("DOCTYPE declaration"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    let deep = listing(&[files]).replacen(
        "<resourcetype/>",
        &format!(
            "<resourcetype>{}{}</resourcetype>",
            "<x>".repeat(10_000),
            "</x>".repeat(10_000)
        ),
        1,
    );
    match parse_multistatus(deep.as_bytes(), &collection()) {
        Err(ListingError::Malformed(reason)) => {
            assert!(reason.contains("nested more than 64 elements deep"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

mod fetch {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use etl_config::{ByteSize, WebdavLogsConfig};
    use etl_core::{ErrorClass, Payload, PayloadBody, PayloadSender, Secret, Source, StageError, Unit, Window};
    use etl_http::{Client, HttpConfig, Redactor};
    use tokio::sync::mpsc;

    use crate::test_server::{reply, routed};
    use crate::webdav_logs::WebdavLogs;

    const TOKEN: &str = "dav-secret-token";

    fn source(base: &str, max_entry_bytes: u64) -> WebdavLogs {
        let cfg = WebdavLogsConfig {
            url: format!("{base}/cell/"),
            token: Secret::new(TOKEN),
            include_current: false,
            max_entry_bytes: ByteSize(max_entry_bytes),
        };
        let http = HttpConfig {
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
            max_attempts: 2,
            ..Default::default()
        };
        WebdavLogs::new(cfg, Client::new(http, Redactor::new([Secret::new(TOKEN)])).unwrap()).unwrap()
    }

    fn unit(base: &str, name: &str, length: usize) -> Unit {
        let mut unit = Unit {
            id: format!("webdav_logs-cell-archive-{name}"),
            window: Window::new(chrono::DateTime::UNIX_EPOCH, chrono::DateTime::UNIX_EPOCH),
            params: Default::default(),
            partitions: Vec::new(),
            provisional: false,
        };
        unit.params.insert("name".into(), name.into());
        unit.params
            .insert("url".into(), format!("{base}/cell/__log/archive/{name}"));
        unit.params.insert("length".into(), length.to_string());
        unit
    }

    /// Fetches `unit` and reads its one payload as the decoder would: the largest chunk, the
    /// bytes, and whether the stream ended in an error.
    async fn fetch(s: &WebdavLogs, unit: &Unit) -> (Result<etl_core::FetchStats, StageError>, usize, u64, bool) {
        let (tx, mut rx) = mpsc::channel::<Payload>(1);
        let read = async {
            let (mut largest, mut total, mut failed) = (0, 0u64, false);
            while let Some(p) = rx.recv().await {
                let PayloadBody::Chunks(mut chunks) = p.body else {
                    panic!("a file payload")
                };
                while let Some(c) = chunks.recv().await {
                    match c {
                        Ok(c) => {
                            largest = largest.max(c.len());
                            total += c.len() as u64;
                        }
                        Err(_) => failed = true,
                    }
                }
            }
            (largest, total, failed)
        };
        let (result, (largest, total, failed)) = tokio::join!(s.fetch(unit, PayloadSender::new(tx)), read);
        (result, largest, total, failed)
    }

    fn serve(body: Vec<u8>) -> Arc<crate::test_server::Handler> {
        let body = Bytes::from(body);
        Arc::new(move |_target: &str, _range, _nth, _host: &str| reply(200, &[], &body))
    }

    #[tokio::test]
    async fn a_zip_bomb_from_the_store_stops_at_the_cap_in_small_pieces() {
        let zip = crate::zip::test_archives::bomb_with_descriptor("default.log.1", 1 << 20, 1024);
        let len = zip.len();
        let server = routed(serve(zip)).await;
        let s = source(&server.base, 64 << 20);
        let (result, largest, total, failed) = fetch(&s, &unit(&server.base, "default.log.1.zip", len)).await;
        let err = result.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(
            err.to_string(),
            format!(
                "default.log.1.zip: zip entry `default.log.1` inflates to more than the cap of {} bytes",
                64 << 20
            )
        );
        assert!(failed, "the decoder sees the error, never a clean end");
        assert!(total <= 64 << 20, "{total} bytes passed on");
        assert!(largest <= 64 << 10, "{largest}-byte chunk");
    }

    #[tokio::test]
    async fn zips_with_lying_sizes_or_a_million_entries_are_refused() {
        use crate::zip::test_archives;
        let lying = test_archives::lying_central_size("default.log.2", b"\"a\",\"b\"\n");
        let million = test_archives::million_empty_entries();
        assert!(million.len() > 30_000_000);
        for (name, zip, want) in [
            (
                "default.log.2.zip",
                lying,
                "default.log.2.zip: zip entry `default.log.2`: the central directory gives the uncompressed size as 16, \
                 but the data gives 8; refusing an archive whose headers disagree with its data",
            ),
            (
                "default.log.3.zip",
                million,
                "default.log.3.zip: the archive holds more entries than the 1 allowed (a rotated log archive holds one)",
            ),
        ] {
            let len = zip.len();
            let server = routed(serve(zip)).await;
            let s = source(&server.base, 1 << 30);
            let (result, _, _, failed) = fetch(&s, &unit(&server.base, name, len)).await;
            let err = result.unwrap_err();
            assert_eq!((err.class(), err.to_string().as_str()), (ErrorClass::Permanent, want));
            assert!(failed);
            // The token went to the cell's own host only, and never into an error.
            let heads = server.heads.lock().unwrap().clone();
            assert!(heads.iter().all(|h| h.contains(&format!("Bearer {TOKEN}"))));
            assert!(!err.to_string().contains(TOKEN));
        }
    }

    #[tokio::test]
    async fn the_token_goes_to_the_cell_origin_only_never_another_port() {
        let server = routed(serve(b"x".to_vec())).await;
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        other.set_nonblocking(true).unwrap();
        let other_base = format!("http://{}", other.local_addr().unwrap());
        let s = source(&server.base, 1 << 20);
        // A unit pointing at another port of the same host (as a tampered state could).
        let (result, _, _, failed) = fetch(&s, &unit(&other_base, "default.log.4", 1)).await;
        let err = result.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains("is not in the allowed hosts"), "{err}");
        assert!(failed);
        assert!(other.accept().is_err(), "the other port got a connection");
        assert!(server.heads.lock().unwrap().is_empty());
        // The cell's own origin is reached, with the token.
        let (result, _, total, _) = fetch(&s, &unit(&server.base, "default.log.4", 1)).await;
        result.unwrap();
        assert_eq!(total, 1);
        assert!(server.heads.lock().unwrap()[0].contains(&format!("Bearer {TOKEN}")));
    }
}
