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
