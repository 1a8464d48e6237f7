//! The decoder is checked against a realistic file, every kind of bad line and broken gzip, and,
//! by property, against the rendering of random lines: whatever the gzip members and the chunks,
//! the same rows, skipped records and errors come out.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMicrosecondType, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use chrono::DateTime;
use proptest::prelude::*;

use super::*;
use crate::testing::{self, ctx, decode_cuts_meta, gzip, gzip_members, micros};

/// One decoded row, every column as a plain value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    requested_at: i64,
    client_ip: Option<String>,
    method: Option<String>,
    url: Option<String>,
    protocol: Option<String>,
    status: Option<u16>,
    bytes: Option<u64>,
    time_taken_ms: Option<u32>,
    referer: Option<String>,
    user_agent: Option<String>,
    cache_status: Option<String>,
    edge_location: Option<String>,
    request_id: Option<String>,
    file_name: String,
}

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        assert_eq!(b.schema(), schema(), "every batch has the documented schema");
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.null_count(), 0);
        assert_eq!(b.column(13).null_count(), 0);
        let text = |c: usize, r: usize| {
            let a = b.column(c).as_string::<i32>();
            a.is_valid(r).then(|| a.value(r).to_string())
        };
        let dict = |c: usize, r: usize| {
            let d = b.column(c).as_dictionary::<Int32Type>();
            let values = d.values().as_string::<i32>();
            d.is_valid(r)
                .then(|| values.value(d.keys().value(r) as usize).to_string())
        };
        let status = b.column(5).as_primitive::<UInt16Type>();
        let bytes = b.column(6).as_primitive::<UInt64Type>();
        let taken = b.column(7).as_primitive::<UInt32Type>();
        for r in 0..b.num_rows() {
            out.push(Row {
                requested_at: ts.value(r),
                client_ip: text(1, r),
                method: dict(2, r),
                url: text(3, r),
                protocol: dict(4, r),
                status: status.is_valid(r).then(|| status.value(r)),
                bytes: bytes.is_valid(r).then(|| bytes.value(r)),
                time_taken_ms: taken.is_valid(r).then(|| taken.value(r)),
                referer: text(8, r),
                user_agent: text(9, r),
                cache_status: dict(10, r),
                edge_location: text(11, r),
                request_id: text(12, r),
                file_name: text(13, r).unwrap(),
            });
        }
    }
    out
}

/// The line decoder behind the [`Format`] interface, so the shared harness can drive it.
#[derive(Debug)]
struct PlainLines(CdnAccessOptions);

impl Format for PlainLines {
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn time_column(&self) -> &'static str {
        "requested_at"
    }
    fn decoder(&self, meta: &PayloadMeta, ctx: DecodeContext) -> Box<dyn Decoder> {
        Box::new(AccessLineDecoder::new(&meta.name, self.0, ctx))
    }
}

/// The gzip decoder holding files of up to `.0` compressed bytes: `Holding(0)` inflates every
/// file as a stream, the path larger files take; a limit inside the file makes it hold the start
/// and stream the rest.
struct Holding(usize);

/// Every file inflated as a stream.
const STREAMED: Holding = Holding(0);

impl Format for Holding {
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn time_column(&self) -> &'static str {
        "requested_at"
    }
    fn decoder(&self, meta: &PayloadMeta, ctx: DecodeContext) -> Box<dyn Decoder> {
        Box::new(CdnAccessDecoder::new(&meta.name, CdnAccessOptions::default(), ctx).holding(self.0))
    }
}

const NAME: &str = "20250911175500.log.gz";

fn meta() -> PayloadMeta {
    PayloadMeta {
        name: NAME.into(),
        ..PayloadMeta::default()
    }
}

type Decoded = (Vec<RecordBatch>, Vec<BadRecord>);

/// Decodes the gzip file `file` cut at `cuts`.
fn decode_gz_cuts(file: &[u8], cuts: &[usize], ctx: DecodeContext) -> Result<Decoded, DecodeError> {
    let format = CdnAccessFormat::default();
    decode_cuts_meta(&format, &meta(), file, cuts, ctx).map(|d| (d.batches, d.bad))
}

/// Decodes `text` gzipped as one member, and checks that the plain line decoder, one-byte
/// chunks and a cut at every third byte of the gzip file all give the same result, whether the
/// file is inflated whole (libdeflate) or streamed (zlib-rs).
fn decode_text(text: &str, ctx: DecodeContext) -> Result<Decoded, DecodeError> {
    let file = gzip(text.as_bytes());
    let whole = decode_gz_cuts(&file, &[], ctx);
    let every: Vec<usize> = (0..file.len()).collect();
    let thirds: Vec<usize> = (0..file.len()).step_by(3).collect();
    let streamed = |cuts: &[usize]| decode_cuts_meta(&STREAMED, &meta(), &file, cuts, ctx).map(|d| (d.batches, d.bad));
    let lines = decode_cuts_meta(
        &PlainLines(CdnAccessOptions::default()),
        &meta(),
        text.as_bytes(),
        &(0..text.len()).collect::<Vec<_>>(),
        ctx,
    )
    .map(|d| (d.batches, d.bad));
    for other in [
        decode_gz_cuts(&file, &every, ctx),
        decode_gz_cuts(&file, &thirds, ctx),
        streamed(&[]),
        streamed(&every),
        streamed(&thirds),
        lines,
    ] {
        match (&whole, &other) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("whole: {a:?}\nsplit: {b:?}"),
        }
    }
    whole
}

fn decode_ok(text: &str) -> Vec<Row> {
    let (batches, bad) = decode_text(text, DecodeContext::default()).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    rows(&batches)
}

/// The one bad record of `line` under `skip`, with the reason it was refused.
fn bad_reason(line: &str) -> String {
    let text = format!("{GOOD}\n{line}\n{GOOD}\n");
    let (batches, bad) = decode_text(&text, ctx(BadRecordPolicy::Skip, 100)).unwrap();
    assert_eq!(rows(&batches).len(), 2, "the good lines around it are kept");
    assert_eq!(bad.len(), 1, "{line}");
    assert_eq!(bad[0].line, 2);
    bad[0].reason.clone()
}

/// The `Malformed` error of the gzip file `file`, checked to be the same byte by byte.
fn malformed_gz(file: &[u8]) -> (u64, String) {
    testing::malformed(&CdnAccessFormat::default(), "gzip access log", file)
}

const GOOD: &str = "2025-09-11T17:55:00.123Z 203.0.113.42 GET \"https://live.example.com/hls/ch1/seg_000123.ts?token=abc\" \
                    HTTP/1.1 200 1843210 123 \"https://www.example.com/watch?v=1\" \
                    \"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36\" \
                    HIT NRT01 0123456789abcdef0123456789abcdef";

fn good_row() -> Row {
    Row {
        requested_at: micros("2025-09-11T17:55:00.123Z"),
        client_ip: Some("203.0.113.42".into()),
        method: Some("GET".into()),
        url: Some("https://live.example.com/hls/ch1/seg_000123.ts?token=abc".into()),
        protocol: Some("HTTP/1.1".into()),
        status: Some(200),
        bytes: Some(1_843_210),
        time_taken_ms: Some(123),
        referer: Some("https://www.example.com/watch?v=1".into()),
        user_agent: Some(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/128.0.0.0 Safari/537.36"
                .into(),
        ),
        cache_status: Some("HIT".into()),
        edge_location: Some("NRT01".into()),
        request_id: Some("0123456789abcdef0123456789abcdef".into()),
        file_name: NAME.into(),
    }
}

/// A file as the vendor writes it: directives, then records of every shape.
fn realistic_file() -> String {
    [
        "#Version: 1.0",
        "#Software: CDN delivery log service",
        "#Start-Date: 2025-09-11 17:55:00",
        "#Fields: timestamp c-ip cs-method cs-uri cs-version sc-status sc-bytes time-taken-ms cs(Referer) \
         cs(User-Agent) x-cache-status x-edge-location x-request-id",
        GOOD,
        "2025-09-11T17:55:01.007Z 2001:db8::1 HEAD \"https://live.example.com/hls/ch1/index.m3u8\" HTTP/2.0 304 0 4 \
         \"-\" \"curl/8.5.0\" MISS NRT02 fedcba9876543210fedcba9876543210",
        "2025-09-11T17:59:59.999Z 198.51.100.7 POST \"https://live.example.com/api/beacon?q=a b&name=\\\"x\\\"\" HTTP/3 \
         503 18446744073709551615 4294967295 - \"Beacon/1.0 (\\\\server\\\\)\" EXPIRED NRT01 \
         00000000000000000000000000000000",
        "2025-09-11T18:00:00Z - OPTIONS \"-\" - - - - \"-\" \"-\" - - -",
        "",
    ]
    .join("\n")
}

fn realistic_rows() -> Vec<Row> {
    let null_row = Row {
        requested_at: micros("2025-09-11T18:00:00Z"),
        client_ip: None,
        method: Some("OPTIONS".into()),
        url: None,
        protocol: None,
        status: None,
        bytes: None,
        time_taken_ms: None,
        referer: None,
        user_agent: None,
        cache_status: None,
        edge_location: None,
        request_id: None,
        file_name: NAME.into(),
    };
    vec![
        good_row(),
        Row {
            requested_at: micros("2025-09-11T17:55:01.007Z"),
            client_ip: Some("2001:db8::1".into()),
            method: Some("HEAD".into()),
            url: Some("https://live.example.com/hls/ch1/index.m3u8".into()),
            protocol: Some("HTTP/2.0".into()),
            status: Some(304),
            bytes: Some(0),
            time_taken_ms: Some(4),
            referer: None,
            user_agent: Some("curl/8.5.0".into()),
            cache_status: Some("MISS".into()),
            edge_location: Some("NRT02".into()),
            request_id: Some("fedcba9876543210fedcba9876543210".into()),
            file_name: NAME.into(),
        },
        Row {
            requested_at: micros("2025-09-11T17:59:59.999Z"),
            client_ip: Some("198.51.100.7".into()),
            method: Some("POST".into()),
            url: Some("https://live.example.com/api/beacon?q=a b&name=\"x\"".into()),
            protocol: Some("HTTP/3".into()),
            status: Some(503),
            bytes: Some(u64::MAX),
            time_taken_ms: Some(u32::MAX),
            referer: None,
            user_agent: Some("Beacon/1.0 (\\server\\)".into()),
            cache_status: Some("EXPIRED".into()),
            edge_location: Some("NRT01".into()),
            request_id: Some("00000000000000000000000000000000".into()),
            file_name: NAME.into(),
        },
        null_row,
    ]
}

#[test]
fn a_realistic_file_decodes_to_typed_columns() {
    let (batches, bad) = decode_text(&realistic_file(), DecodeContext::default()).unwrap();
    assert!(bad.is_empty());
    assert_eq!(batches.len(), 1);
    assert_eq!(rows(&batches), realistic_rows());
    // The dictionaries hold the batch's values in order of first appearance.
    let methods = batches[0].column(2).as_dictionary::<Int32Type>();
    let values: Vec<&str> = methods.values().as_string::<i32>().iter().flatten().collect();
    assert_eq!(values, ["GET", "HEAD", "POST", "OPTIONS"]);
    let cache = batches[0].column(10).as_dictionary::<Int32Type>();
    assert_eq!(cache.null_count(), 1);
}

#[test]
fn schema_is_frozen() {
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let expected = vec![
        (
            "requested_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        ("client_ip", DataType::Utf8, true),
        ("method", dict.clone(), true),
        ("url", DataType::Utf8, true),
        ("protocol", dict.clone(), true),
        ("status", DataType::UInt16, true),
        ("bytes", DataType::UInt64, true),
        ("time_taken_ms", DataType::UInt32, true),
        ("referer", DataType::Utf8, true),
        ("user_agent", DataType::Utf8, true),
        ("cache_status", dict, true),
        ("edge_location", DataType::Utf8, true),
        ("request_id", DataType::Utf8, true),
        ("file_name", DataType::Utf8, false),
    ];
    let s = schema();
    let actual: Vec<_> = s
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(actual, expected);
    assert!(s.metadata().is_empty());
}

#[test]
fn format_names_its_schema_time_column_and_file() {
    let format = CdnAccessFormat::new(CdnAccessOptions::default());
    assert_eq!(format.schema(), schema());
    assert_eq!(format.time_column(), "requested_at");
    assert!(format.schema().field_with_name(format.time_column()).is_ok());
    let file = gzip(format!("{GOOD}\n").as_bytes());
    let file_name = |meta: &PayloadMeta| {
        let d = decode_cuts_meta(&format, meta, &file, &[], DecodeContext::default()).unwrap();
        rows(&d.batches)[0].file_name.clone()
    };
    let mut meta = PayloadMeta {
        name: "page name".into(),
        ..PayloadMeta::default()
    };
    assert_eq!(file_name(&meta), "page name");
    meta.labels.insert("file_name".into(), "20250911175500-1.log.gz".into());
    assert_eq!(file_name(&meta), "20250911175500-1.log.gz");
}

#[test]
fn options_default_to_64_kib_lines_and_16_gib_files() {
    let o = CdnAccessOptions::default();
    assert_eq!(o.max_line_bytes, 65_536);
    assert_eq!(o.max_decompressed_bytes, 17_179_869_184);
}

/// `GOOD` with its quoted fields replaced.
fn with_quoted(url: &str, referer: &str, agent: &str) -> String {
    format!(
        "2025-09-11T17:55:00.123Z 203.0.113.42 GET {url} HTTP/1.1 200 1843210 123 {referer} {agent} HIT NRT01 \
         0123456789abcdef0123456789abcdef"
    )
}

#[test]
fn quoted_fields_keep_spaces_escapes_and_utf8() {
    let lines = [
        with_quoted(
            r#""https://例え.jp/パス?q=a b  c""#,
            r#""say \"hi\"""#,
            r#""agent \\ with \\\" both""#,
        ),
        // A backslash before anything else is kept, with that character.
        with_quoted(r#""C:\temp\x41\n""#, r#""\-""#, r#""end\\""#),
        // Empty quotes are an empty string; `"-"` and a bare `-` are null.
        with_quoted(r#""""#, r#""-""#, "-"),
        with_quoted(r#""-x""#, r#"" - ""#, r#""😀 𝄞 ß""#),
    ];
    let got = decode_ok(&format!("{}\n", lines.join("\n")));
    let q = |r: &Row| (r.url.clone(), r.referer.clone(), r.user_agent.clone());
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        got.iter().map(q).collect::<Vec<_>>(),
        vec![
            (
                s("https://例え.jp/パス?q=a b  c"),
                s("say \"hi\""),
                s(r#"agent \ with \" both"#)
            ),
            (s(r"C:\temp\x41\n"), s(r"\-"), s(r"end\")),
            (s(""), None, None),
            (s("-x"), s(" - "), s("😀 𝄞 ß")),
        ]
    );
    assert!(got.iter().all(|r| r.status == Some(200) && r.request_id.is_some()));
}

#[test]
fn timestamps_take_zero_to_six_fractional_digits() {
    let cases = [
        ("2025-09-11T17:55:00Z", "2025-09-11T17:55:00Z"),
        ("2025-09-11T17:55:00.1Z", "2025-09-11T17:55:00.1Z"),
        ("2025-09-11T17:55:00.12Z", "2025-09-11T17:55:00.12Z"),
        ("2025-09-11T17:55:00.123Z", "2025-09-11T17:55:00.123Z"),
        ("2025-09-11T17:55:00.123456Z", "2025-09-11T17:55:00.123456Z"),
        ("2024-02-29T23:59:59.000001Z", "2024-02-29T23:59:59.000001Z"),
        ("1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00Z"),
        ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.5Z"),
        ("2025-12-31T00:00:00Z", "2025-12-31T00:00:00Z"),
    ];
    let text: String = cases.iter().map(|(ts, _)| format!("{ts}{}\n", &GOOD[24..])).collect();
    let got: Vec<i64> = decode_ok(&text).iter().map(|r| r.requested_at).collect();
    let expected: Vec<i64> = cases.iter().map(|(_, rfc)| micros(rfc)).collect();
    assert_eq!(got, expected);
}

#[test]
fn directives_empty_lines_crlf_bom_and_a_missing_last_newline() {
    let text = format!("\u{FEFF}#Version: 1.0\r\n\r\n#Fields: x\r\n{GOOD}\r\n\n# a comment\n{GOOD}");
    let got = decode_ok(&text);
    assert_eq!(got, vec![good_row(), good_row()]);
    // A BOM on a record line is ignored too.
    assert_eq!(decode_ok(&format!("\u{FEFF}{GOOD}\n")), vec![good_row()]);
    // Only a CR right before the LF is a line ending: elsewhere it is text.
    let cr_inside = with_quoted("\"a\rb\"", "\"-\"", "\"-\"");
    assert_eq!(decode_ok(&format!("{cr_inside}\r\n"))[0].url.as_deref(), Some("a\rb"));
}

#[test]
fn a_file_of_directives_only_gives_no_rows() {
    for text in ["#Version: 1.0\n#Fields: timestamp c-ip\n", "#Version: 1.0", "\n\n", ""] {
        let (batches, bad) = decode_text(text, DecodeContext::default()).unwrap();
        assert!(batches.is_empty(), "{text:?}");
        assert!(bad.is_empty());
    }
}

#[test]
fn members_may_split_a_file_anywhere_even_inside_a_line() {
    let text = realistic_file();
    let expected = realistic_rows();
    // Three members: the second boundary falls inside a multi-byte character of a line.
    let inside = text.find("例").unwrap_or(text.len() / 2);
    let cuts = [text.find(GOOD).unwrap() + 40, inside.max(text.len() / 2) + 1];
    let file = gzip_members(text.as_bytes(), &cuts);
    let every: Vec<usize> = (0..file.len()).collect();
    for cuts in [&[][..], &every] {
        let (batches, bad) = decode_gz_cuts(&file, cuts, DecodeContext::default()).unwrap();
        assert!(bad.is_empty());
        assert_eq!(rows(&batches), expected);
    }
    // Every single split of the text into two members.
    for at in 0..=text.len() {
        let file = gzip_members(text.as_bytes(), &[at]);
        let (batches, _) = decode_gz_cuts(&file, &[file.len() / 2], DecodeContext::default()).unwrap();
        assert_eq!(rows(&batches), expected, "member boundary at {at}");
    }
}

#[test]
fn batches_hold_batch_size_rows() {
    let text: String = (0..10).map(|_| format!("{GOOD}\n")).collect();
    let (batches, _) = decode_text(&text, ctx(BadRecordPolicy::Fail, 4)).unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), [4, 4, 2]);
    assert_eq!(rows(&batches), vec![good_row(); 10]);
}

#[test]
fn a_file_longer_than_the_first_reservation_decodes_the_same_whatever_the_batch_size() {
    // The columns start with room for INITIAL_ROWS rows and, when they fill it, get room for a
    // whole batch (keeping their rows); a later batch starts with room for as many rows as the
    // one before, and the last batch of a file keeps none.
    let body: String = realistic_file().lines().skip(4).map(|l| format!("{l}\n")).collect();
    let copies = 3 * INITIAL_ROWS / realistic_rows().len();
    let text = realistic_file() + &body.repeat(copies - 1);
    let want: Vec<Row> = std::iter::repeat_n(realistic_rows(), copies).flatten().collect();
    assert!(want.len() > 2 * INITIAL_ROWS);
    for batch_size in [DecodeContext::default().batch_size, INITIAL_ROWS + 1, 700, 1] {
        let (batches, bad) = decode_text(&text, ctx(BadRecordPolicy::Fail, batch_size)).unwrap();
        assert!(bad.is_empty());
        assert!(
            batches.iter().all(|b| b.num_rows() <= batch_size),
            "batch_size {batch_size}"
        );
        assert_eq!(rows(&batches), want, "batch_size {batch_size}");
    }
}

#[test]
fn dictionaries_with_many_values_switch_to_a_map() {
    let methods: Vec<String> = (0..40).map(|i| format!("M{}", i % 25)).collect();
    let text: String = methods
        .iter()
        .map(|m| format!("{}\n", GOOD.replacen(" GET ", &format!(" {m} "), 1)))
        .collect();
    let got = decode_ok(&text);
    assert_eq!(
        got.iter().map(|r| r.method.clone().unwrap()).collect::<Vec<_>>(),
        methods
    );
    let (batches, _) = decode_text(&text, DecodeContext::default()).unwrap();
    assert_eq!(batches[0].column(2).as_dictionary::<Int32Type>().values().len(), 25);
}

#[test]
fn bad_lines_are_refused_with_a_reason() {
    let g = GOOD;
    let cases: Vec<(String, &str)> = vec![
        (
            "2025-09-11T17:55:00.123Z 203.0.113.42 GET".into(),
            "expected 13 space-separated fields, found 3",
        ),
        (format!("{g} extra"), "more than 13 space-separated fields"),
        (format!("{g} "), "more than 13 space-separated fields"),
        (g.replacen(" GET ", "  GET ", 1), "cs-method (field 3) is empty"),
        (
            g.replacen("HIT NRT01 ", "HIT NRT01", 1),
            "expected 13 space-separated fields, found 12",
        ),
        (
            g.replacen("NRT01 0123456789abcdef0123456789abcdef", "NRT01 ", 1),
            "x-request-id (field 13) is empty",
        ),
        (
            g.replacen(".123Z", ".123", 1),
            "timestamp `2025-09-11T17:55:00.123` is not a valid YYYY-MM-DDThh:mm:ss[.ffffff]Z time",
        ),
        (
            g.replacen(".123Z", ".1234567Z", 1),
            "timestamp `2025-09-11T17:55:00.1234567Z` is not a valid YYYY-MM-DDThh:mm:ss[.ffffff]Z time",
        ),
        (
            g.replacen(".123Z", ".Z", 1),
            "timestamp `2025-09-11T17:55:00.Z` is not a valid YYYY-MM-DDThh:mm:ss[.ffffff]Z time",
        ),
        (
            g.replacen("2025-09-11T17:55:00", "2025-02-29T17:55:00", 1),
            "timestamp `2025-02-29T17:55:00.123Z` is not a valid YYYY-MM-DDThh:mm:ss[.ffffff]Z time",
        ),
        (
            g.replacen("17:55:00", "17:55:60", 1),
            "timestamp `2025-09-11T17:55:60.123Z` is not a valid YYYY-MM-DDThh:mm:ss[.ffffff]Z time",
        ),
        (
            g.replacen("17:55:00", "24:00:00", 1),
            "timestamp `2025-09-11T24:00:00.123Z` is not a valid YYYY-MM-DDThh:mm:ss[.ffffff]Z time",
        ),
        (
            g.replacen("2025-09-11T", "2025/09/11T", 1),
            "timestamp `2025/09/11T17:55:00.123Z` is not a valid YYYY-MM-DDThh:mm:ss[.ffffff]Z time",
        ),
        (
            g.replacen("2025-09-11T17:55:00.123Z", "-", 1),
            "timestamp `-` is not a valid YYYY-MM-DDThh:mm:ss[.ffffff]Z time",
        ),
        (
            g.replacen(" 200 ", " 2OO ", 1),
            "sc-status `2OO` is not an unsigned integer",
        ),
        (
            g.replacen(" 200 ", " -200 ", 1),
            "sc-status `-200` is not an unsigned integer",
        ),
        (g.replacen(" 200 ", " 65536 ", 1), "sc-status `65536` is too large"),
        (
            g.replacen(" 1843210 ", " 18446744073709551616 ", 1),
            "sc-bytes `18446744073709551616` is too large",
        ),
        (
            g.replacen(" 1843210 ", " 99999999999999999999999 ", 1),
            "sc-bytes `99999999999999999999999` is too large",
        ),
        (
            g.replacen(" 123 ", " 4294967296 ", 1),
            "time-taken-ms `4294967296` is too large",
        ),
        (
            g.replacen(" 123 ", " 1.5 ", 1),
            "time-taken-ms `1.5` is not an unsigned integer",
        ),
        (
            g.replacen(
                "\"https://www.example.com/watch?v=1\"",
                "https://www.example.com/watch?v=1",
                1,
            ),
            "cs(Referer) `https://www.example.com/watch?v=1` is not quoted",
        ),
        (
            g.replacen("\"https://www.example.com/watch?v=1\"", "\"abc\"def", 1),
            "cs(Referer) has text after its closing quote: `def \"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.3...`",
        ),
        (
            with_quoted("\"-\"", "\"-\"", "\"no end"),
            "cs(User-Agent) has no closing quote",
        ),
        (
            with_quoted("\"-\"", "\"-\"", "\"escaped end\\\" HIT NRT01 x"),
            "cs(User-Agent) has no closing quote",
        ),
        (
            with_quoted("\"-\"", "\"-\"", "\"ends in a backslash\\"),
            "cs(User-Agent) has no closing quote",
        ),
        (
            "2025-09-11T17:55:00.123Z 203.0.113.42 GET \"https://x/\"".into(),
            "expected 13 space-separated fields, found 4",
        ),
    ];
    for (line, reason) in cases {
        assert_eq!(bad_reason(&line), reason, "{line}");
    }
}

#[test]
fn invalid_utf8_is_a_bad_line() {
    let mut text = format!("{GOOD}\n").into_bytes();
    let mut bad = GOOD.as_bytes().to_vec();
    bad[60] = 0xFF;
    text.extend(&bad);
    text.extend(format!("\n{GOOD}\n").as_bytes());
    let file = gzip(&text);
    let every: Vec<usize> = (0..file.len()).collect();
    let (batches, skipped) = decode_gz_cuts(&file, &every, ctx(BadRecordPolicy::Skip, 10)).unwrap();
    assert_eq!(rows(&batches), vec![good_row(), good_row()]);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].line, 2);
    assert_eq!(skipped[0].reason, "invalid UTF-8 at byte 60 of the line");
    assert_eq!(skipped[0].payload, NAME);
}

#[test]
fn a_bad_line_under_fail_names_the_file_and_the_line() {
    let text = format!("#Version: 1.0\n{GOOD}\n{}\n{GOOD}\n", GOOD.replacen(" 200 ", " x ", 1));
    let file = gzip(text.as_bytes());
    let err = decode_gz_cuts(&file, &[], DecodeContext::default()).unwrap_err();
    let split = decode_gz_cuts(&file, &(0..file.len()).collect::<Vec<_>>(), DecodeContext::default()).unwrap_err();
    assert_eq!(err.to_string(), split.to_string());
    match err {
        DecodeError::BadRecord { line, reason, excerpt } => {
            assert_eq!(line, 3);
            assert_eq!(
                reason,
                "sc-status `x` is not an unsigned integer (file 20250911175500.log.gz)"
            );
            assert!(excerpt.starts_with("2025-09-11T17:55:00.123Z 203.0.113.42 GET"));
        }
        other => panic!("expected BadRecord, got {other:?}"),
    }
}

#[test]
fn skipped_lines_carry_line_number_and_sample() {
    let text = format!("{GOOD}\nnot a record\n#c\n{GOOD}\n2025-09-11T17:55:00Z x\n{GOOD}");
    let (batches, bad) = decode_text(&text, ctx(BadRecordPolicy::Skip, 2)).unwrap();
    assert_eq!(rows(&batches), vec![good_row(); 3]);
    let got: Vec<(u64, &str, &str)> = bad
        .iter()
        .map(|b| (b.line, b.raw.as_str(), b.payload.as_str()))
        .collect();
    assert_eq!(got, [(2, "not a record", NAME), (5, "2025-09-11T17:55:00Z x", NAME)]);
}

#[test]
fn an_over_long_line_is_a_bad_record_and_never_buffered_whole() {
    let opts = CdnAccessOptions {
        max_line_bytes: 1000,
        ..CdnAccessOptions::default()
    };
    let long = with_quoted(&format!("\"{}\"", "u".repeat(2000)), "\"-\"", "\"-\"");
    let pad = 1000 - with_quoted("\"\"", "\"-\"", "\"-\"").len();
    let exactly = with_quoted(&format!("\"{}\"", "v".repeat(pad)), "\"-\"", "\"-\"");
    assert_eq!(exactly.len(), 1000);
    for last_newline in ["\n", ""] {
        let text = format!("{GOOD}\n{long}\n{exactly}\n{GOOD}\n{long}{last_newline}");
        let format = CdnAccessFormat::new(opts);
        let file = gzip(text.as_bytes());
        let skip = ctx(BadRecordPolicy::Skip, 10);
        let whole = decode_cuts_meta(&format, &meta(), &file, &[], skip).unwrap();
        for cuts in [
            (0..file.len()).collect::<Vec<_>>(),
            (0..file.len()).step_by(97).collect(),
        ] {
            let split = decode_cuts_meta(&format, &meta(), &file, &cuts, skip).unwrap();
            assert_eq!(split.batches, whole.batches);
            assert_eq!(split.bad, whole.bad);
        }
        let got = rows(&whole.batches);
        assert_eq!(got.len(), 3, "the lines around the long ones are kept");
        assert_eq!(got[1].url.as_ref().map(String::len), Some(pad));
        let bad: Vec<(u64, &str)> = whole.bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
        let reason = "line longer than 1000 bytes (max_line_bytes)";
        assert_eq!(bad, [(2, reason), (5, reason)]);
        assert_eq!(whole.bad[0].raw.len(), 512, "the sample is the start of the line, cut");
        assert!(long.starts_with(&whole.bad[0].raw));

        let err = testing::decode_err(&format, &file, DecodeContext::default());
        assert_eq!(
            err.to_string(),
            format!(
                "line 2: line longer than 1000 bytes (max_line_bytes): {:?}",
                &long[..512]
            )
        );
    }

    // Fed in small pieces, the decoder holds at most the limit.
    let mut d = AccessLineDecoder::new(NAME, opts, ctx(BadRecordPolicy::Skip, 10));
    let mut out = Vec::new();
    for piece in "w".repeat(10_000).as_bytes().chunks(300) {
        d.decode(piece, &mut out).unwrap();
        assert!(d.partial.len() <= 1000);
    }
    d.decode(format!("\n{GOOD}").as_bytes(), &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert_eq!(rows(&out).len(), 1);
    assert_eq!(d.take_bad_records().len(), 1);
}

#[test]
fn a_crlf_line_counts_its_cr_against_the_limit() {
    let opts = CdnAccessOptions {
        max_line_bytes: GOOD.len(),
        ..CdnAccessOptions::default()
    };
    let format = CdnAccessFormat::new(opts);
    let file = gzip(format!("{GOOD}\n{GOOD}\r\n").as_bytes());
    let d = decode_cuts_meta(&format, &meta(), &file, &[7], ctx(BadRecordPolicy::Skip, 10)).unwrap();
    assert_eq!(rows(&d.batches).len(), 1);
    assert_eq!(d.bad.len(), 1);
    assert_eq!(d.bad[0].line, 2);
}

#[test]
fn a_truncated_file_is_malformed_never_short() {
    let file = gzip(realistic_file().as_bytes());
    let (line, reason) = malformed_gz(&file[..file.len() - 3]);
    assert_eq!(line, 9, "everything was inflated: the error is after the last line");
    assert_eq!(
        reason,
        "the file is truncated: gzip member 1 (starting at compressed byte 0) has no end"
    );
    // With the file name, under the real decoder.
    let err = decode_gz_cuts(&file[..file.len() / 2], &[], DecodeContext::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("malformed gzip access log near line "),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(": 20250911175500.log.gz: the file is truncated"),
        "{err}"
    );
    assert!(matches!(err, DecodeError::Malformed { .. }));
    // Every prefix fails, even with lines to show: a cut file is retried, not loaded short.
    let text = format!("{GOOD}\n{GOOD}\n");
    let file = gzip_members(text.as_bytes(), &[GOOD.len() + 1]);
    let first = gzip(format!("{GOOD}\n").as_bytes()).len();
    for cut in 1..file.len() {
        if cut == first {
            continue; // a complete one-member file
        }
        let err = decode_gz_cuts(&file[..cut], &[cut / 2], ctx(BadRecordPolicy::Skip, 1)).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "cut at {cut}: {err}");
    }
}

#[test]
fn gzip_errors_are_malformed() {
    let text = format!("{GOOD}\n{GOOD}\n");
    let good = gzip(text.as_bytes());

    let mut garbage = good.clone();
    garbage.extend(b"\0\0\0\0");
    let (line, reason) = malformed_gz(&garbage);
    assert_eq!(line, 3);
    assert_eq!(
        reason,
        format!(
            "the bytes after gzip member 1, at compressed byte {}, are not another gzip member",
            good.len()
        )
    );

    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0x40;
    let (_, reason) = malformed_gz(&bad_crc);
    assert_eq!(
        reason,
        "gzip member 1 (starting at compressed byte 0) is corrupt: CRC-32 mismatch (incorrect data check)"
    );

    let (line, reason) = malformed_gz(b"");
    assert_eq!((line, reason.as_str()), (1, "the file is empty (0 bytes), not gzip"));
    let (_, reason) = malformed_gz(text.as_bytes());
    assert_eq!(
        reason,
        "not a gzip file: it does not start with the gzip magic number 1f 8b"
    );
    // Held or not, a file that does not start like gzip fails with its first chunk, not once
    // the whole download has arrived.
    let mut d = CdnAccessDecoder::new(NAME, CdnAccessOptions::default(), DecodeContext::default());
    let err = d.decode(&text.as_bytes()[..10], &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("not a gzip file"), "{err}");
    // A gzip file that holds an empty text is fine: no rows.
    assert!(
        decode_gz_cuts(&gzip(b""), &[], DecodeContext::default())
            .unwrap()
            .0
            .is_empty()
    );
}

#[test]
fn the_decompressed_size_is_capped() {
    let text: String = (0..20).map(|_| format!("{GOOD}\n")).collect();
    let file = gzip_members(text.as_bytes(), &[text.len() / 2]);
    let capped = |max: u64| {
        CdnAccessFormat::new(CdnAccessOptions {
            max_decompressed_bytes: max,
            ..CdnAccessOptions::default()
        })
    };
    let exact = decode_cuts_meta(
        &capped(text.len() as u64),
        &meta(),
        &file,
        &[],
        DecodeContext::default(),
    )
    .unwrap();
    assert_eq!(rows(&exact.batches).len(), 20);
    let line_len = GOOD.len() as u64 + 1;
    let err = testing::decode_err(&capped(3 * line_len + 10), &file, DecodeContext::default());
    match err {
        DecodeError::Malformed { what, line, reason } => {
            assert_eq!(what, "gzip access log");
            assert_eq!(line, 4, "three whole lines fit under the cap");
            assert_eq!(
                reason,
                format!(
                    "more than {} bytes after decompression: refused as a likely gzip bomb \
                     (raise max_decompressed_bytes if the file is genuine)",
                    3 * line_len + 10
                )
            );
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn no_input_after_finish_or_an_error() {
    let mut d = CdnAccessDecoder::new(NAME, CdnAccessOptions::default(), DecodeContext::default());
    let mut out = Vec::new();
    d.decode(&gzip(format!("{GOOD}\n").as_bytes()), &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert_eq!(rows(&out), vec![good_row()]);
    let err = d.decode(b"more", &mut out).unwrap_err();
    assert!(
        err.to_string().contains("input after the decoder finished or failed"),
        "{err}"
    );
    assert!(d.finish(&mut out).is_err());

    let mut d = AccessLineDecoder::new(NAME, CdnAccessOptions::default(), DecodeContext::default());
    assert!(d.decode(b"bad line\n", &mut out).is_err());
    assert!(d.decode(format!("{GOOD}\n").as_bytes(), &mut out).is_err());
    assert!(d.finish(&mut out).is_err());
}

#[test]
fn the_plain_line_decoder_takes_no_file_name_from_an_empty_one() {
    let mut d = AccessLineDecoder::new("", CdnAccessOptions::default(), DecodeContext::default());
    let mut out = Vec::new();
    let err = d.decode(b"x\n", &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: expected 13 space-separated fields, found 1: \"x\""
    );
}

// ---- property: render random lines, gzip them in random members, decode in random chunks ----

#[derive(Clone, Debug)]
struct GenLine {
    secs: i64,
    /// Fractional digits written (0 to 6) and their value.
    frac: (u32, u32),
    client_ip: Option<String>,
    method: Option<&'static str>,
    url: Option<String>,
    protocol: Option<&'static str>,
    status: Option<u16>,
    bytes: Option<u64>,
    time_taken_ms: Option<u32>,
    referer: Option<String>,
    user_agent: Option<String>,
    cache_status: Option<&'static str>,
    edge_location: Option<String>,
    request_id: Option<String>,
    /// Write null quoted fields as a bare `-` instead of `"-"`.
    bare_nulls: bool,
    crlf: bool,
    /// Replace the status with something that is not a number.
    bad: bool,
}

/// Text for a quoted field: spaces, quotes, backslashes and UTF-8 of every length.
fn quoted_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            2 => proptest::sample::select(vec!['/', '?', '=', '&', '%', '.', '-', ':', '0']),
            2 => proptest::sample::select(vec![' ', '"', '\\', '#', '\t']),
            2 => proptest::sample::select(vec!['é', 'ü', 'ß', '日', '本', 'ア', '😀', '𝄞']),
        ],
        0..30,
    )
    .prop_map(|v| v.into_iter().collect::<String>())
    // `-` alone is the vendor's null.
    .prop_filter("not the null marker", |s| s != "-")
}

fn gen_line() -> impl Strategy<Value = GenLine> {
    let time = (
        -86_400i64..4_102_444_800,
        (0u32..=6).prop_flat_map(|d| (Just(d), 0..10u32.pow(d))),
    );
    let text = (
        proptest::option::weighted(0.9, "[0-9a-f:.]{1,39}"),
        proptest::option::weighted(
            0.9,
            proptest::sample::select(vec!["GET", "HEAD", "POST", "OPTIONS", "PUT"]),
        ),
        proptest::option::weighted(0.9, quoted_text()),
        proptest::option::weighted(0.9, proptest::sample::select(vec!["HTTP/1.1", "HTTP/2.0", "HTTP/3"])),
    );
    let numbers = (
        proptest::option::weighted(0.9, any::<u16>()),
        proptest::option::weighted(0.9, any::<u64>()),
        proptest::option::weighted(0.9, any::<u32>()),
    );
    let tail = (
        proptest::option::weighted(0.7, quoted_text()),
        proptest::option::weighted(0.8, quoted_text()),
        proptest::option::weighted(
            0.8,
            proptest::sample::select(vec!["HIT", "MISS", "EXPIRED", "STALE", "BYPASS"]),
        ),
        proptest::option::weighted(0.9, "[A-Z]{3}[0-9]{2}"),
        proptest::option::weighted(0.9, "[0-9a-f]{32}"),
        (any::<bool>(), any::<bool>(), proptest::bool::weighted(0.1)),
    );
    (time, text, numbers, tail).prop_map(
        |(
            (secs, frac),
            (client_ip, method, url, protocol),
            (status, bytes, time_taken_ms),
            (referer, user_agent, cache_status, edge_location, request_id, (bare_nulls, crlf, bad)),
        )| GenLine {
            secs,
            frac,
            client_ip,
            method,
            url,
            protocol,
            status,
            bytes,
            time_taken_ms,
            referer,
            user_agent,
            cache_status,
            edge_location,
            request_id,
            bare_nulls,
            crlf,
            bad,
        },
    )
}

fn render_quoted(v: &Option<String>, bare_null: bool) -> String {
    match v {
        None if bare_null => "-".into(),
        None => "\"-\"".into(),
        Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), ToString::to_string)
}

/// The text of `lines` with directives and empty lines between them, and the rows it must
/// decode to.
fn render(lines: &[GenLine], final_newline: bool) -> (String, Vec<Row>) {
    let mut text = String::from("#Version: 1.0\n#Fields: timestamp c-ip cs-method ...\n");
    let mut expected = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i % 7 == 3 {
            text.push_str("# a directive in the middle\n\n");
        }
        let (digits, value) = l.frac;
        let when = DateTime::from_timestamp(l.secs, 0).unwrap().format("%Y-%m-%dT%H:%M:%S");
        let frac = if digits == 0 {
            String::new()
        } else {
            format!(".{value:0width$}", width = digits as usize)
        };
        let status = if l.bad { "bad".to_string() } else { opt(&l.status) };
        text.push_str(&format!(
            "{when}{frac}Z {} {} {} {} {status} {} {} {} {} {} {} {}",
            opt(&l.client_ip),
            opt(&l.method),
            render_quoted(&l.url, l.bare_nulls),
            opt(&l.protocol),
            opt(&l.bytes),
            opt(&l.time_taken_ms),
            render_quoted(&l.referer, l.bare_nulls),
            render_quoted(&l.user_agent, l.bare_nulls),
            opt(&l.cache_status),
            opt(&l.edge_location),
            opt(&l.request_id),
        ));
        if i + 1 < lines.len() || final_newline {
            text.push_str(if l.crlf { "\r\n" } else { "\n" });
        }
        if !l.bad {
            expected.push(Row {
                requested_at: l.secs * 1_000_000 + i64::from(value * 10u32.pow(6 - digits)),
                client_ip: l.client_ip.clone(),
                method: l.method.map(String::from),
                url: l.url.clone(),
                protocol: l.protocol.map(String::from),
                status: l.status,
                bytes: l.bytes,
                time_taken_ms: l.time_taken_ms,
                referer: l.referer.clone(),
                user_agent: l.user_agent.clone(),
                cache_status: l.cache_status.map(String::from),
                edge_location: l.edge_location.clone(),
                request_id: l.request_id.clone(),
                file_name: NAME.into(),
            });
        }
    }
    (text, expected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_lines_round_trip_through_any_members_and_chunks(
        lines in proptest::collection::vec(gen_line(), 0..30),
        final_newline in any::<bool>(),
        members in proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..30),
        batch_size in 1usize..9,
        hold in any::<proptest::sample::Index>(),
    ) {
        let (text, expected) = render(&lines, final_newline);
        let members: Vec<usize> = members.iter().map(|i| i.index(text.len() + 1)).collect();
        let file = gzip_members(text.as_bytes(), &members);
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(file.len() + 1)).collect();
        let skip = ctx(BadRecordPolicy::Skip, batch_size);

        let (batches, bad) = decode_gz_cuts(&file, &cuts, skip).unwrap();
        prop_assert_eq!(rows(&batches), expected);
        prop_assert_eq!(bad.len(), lines.iter().filter(|l| l.bad).count());
        prop_assert!(batches.iter().all(|b| b.num_rows() > 0 && b.num_rows() <= batch_size));

        // The same batches as one call with the whole file, and as the plain line decoder.
        let (whole, whole_bad) = decode_gz_cuts(&file, &[], skip).unwrap();
        prop_assert_eq!(&whole, &batches);
        prop_assert_eq!(&whole_bad, &bad);
        let text_cuts: Vec<usize> = cuts.iter().map(|&c| c.min(text.len())).collect();
        let plain = decode_cuts_meta(&PlainLines(CdnAccessOptions::default()), &meta(), text.as_bytes(), &text_cuts, skip).unwrap();
        prop_assert_eq!(&plain.batches, &batches);
        prop_assert_eq!(&plain.bad, &bad);
        // And streamed: a one-member file held and inflated whole by libdeflate gives what
        // zlib-rs gives chunk by chunk, as does a file that outgrows the hold limit midway.
        for limit in [0, hold.index(file.len() + 1)] {
            let streamed = decode_cuts_meta(&Holding(limit), &meta(), &file, &cuts, skip).unwrap();
            prop_assert_eq!(&streamed.batches, &batches);
            prop_assert_eq!(&streamed.bad, &bad);
        }
    }

    /// A file cut anywhere but at the end of a member is refused; the error does not depend on
    /// the chunks.
    #[test]
    fn any_cut_inside_a_member_is_malformed(
        lines in proptest::collection::vec(gen_line(), 1..10),
        members in proptest::collection::vec(any::<proptest::sample::Index>(), 0..3),
        cut in any::<proptest::sample::Index>(),
        chunk in any::<proptest::sample::Index>(),
    ) {
        let (text, _) = render(&lines, true);
        let mut members: Vec<usize> = members.iter().map(|i| i.index(text.len() + 1)).collect();
        members.sort_unstable();
        let file = gzip_members(text.as_bytes(), &members);
        let mut ends = Vec::new();
        let mut start = 0;
        for m in members.iter().copied().chain([text.len()]) {
            let prev = ends.last().copied().unwrap_or(0);
            ends.push(prev + gzip(&text.as_bytes()[start..m]).len());
            start = m;
        }
        let cut = cut.index(file.len());
        prop_assume!(!ends.contains(&cut));
        let prefix = &file[..cut];
        let policy = ctx(BadRecordPolicy::Skip, 4);
        let whole = decode_gz_cuts(prefix, &[], policy);
        let split = decode_gz_cuts(prefix, &[chunk.index(prefix.len() + 1)], policy);
        prop_assert!(matches!(whole, Err(DecodeError::Malformed { .. })), "{:?}", whole);
        prop_assert_eq!(whole.unwrap_err().to_string(), split.unwrap_err().to_string());
    }

    /// Damaged files (any byte of the compressed file replaced, bytes deleted or inserted):
    /// whatever the damage, the chunks change neither the rows, nor the skipped records, nor
    /// the error.
    #[test]
    fn damaged_files_decode_the_same_whatever_the_chunks(
        lines in proptest::collection::vec(gen_line(), 1..8),
        members in proptest::collection::vec(any::<proptest::sample::Index>(), 0..3),
        at in any::<proptest::sample::Index>(),
        damage in proptest::collection::vec(any::<u8>(), 0..4),
        delete in 0usize..4,
        skip in any::<bool>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 1..20),
    ) {
        let (text, _) = render(&lines, true);
        let members: Vec<usize> = members.iter().map(|i| i.index(text.len() + 1)).collect();
        let mut file = gzip_members(text.as_bytes(), &members);
        let at = at.index(file.len());
        let delete = delete.min(file.len() - at);
        file.splice(at..at + delete, damage);
        let policy = if skip { BadRecordPolicy::Skip } else { BadRecordPolicy::Fail };
        let ctx = ctx(policy, 3);
        let whole = decode_gz_cuts(&file, &[], ctx);
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(file.len() + 1)).collect();
        let split = decode_gz_cuts(&file, &cuts, ctx);
        match (whole, split) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "whole: {:?}\nsplit: {:?}", a, b),
        }
    }
}

/// The word-at-a-time space search agrees with a plain scan at every length and position, with
/// the bytes next to a space in value (`!`, `\x1f`, `\xa0`) around it to catch a borrow that
/// flags the wrong byte.
#[test]
fn find_space_agrees_with_a_plain_scan() {
    let fillers = [b'a', b'!', 0x1f, 0xa0, 0x00, 0xff, 0x01];
    for len in 0..40 {
        for &fill in &fillers {
            for &after in &fillers {
                for first in 0..=len {
                    let mut b = vec![fill; len];
                    if first < len {
                        b[first] = b' ';
                        for (i, c) in b.iter_mut().enumerate().skip(first + 1) {
                            *c = if i % 3 == 0 { b' ' } else { after };
                        }
                    }
                    let want = b.iter().position(|&c| c == b' ');
                    assert_eq!(find_space(&b), want, "{b:?}");
                }
            }
        }
    }
}

/// Feeds `file` to a streaming decoder (one that holds nothing) in 64 KiB chunks; returns the
/// batches, the bad records, the compressed bytes it was fed before it failed, and its error.
fn feed_bomb(
    file: &[u8],
    opts: CdnAccessOptions,
    ctx: DecodeContext,
) -> (Vec<RecordBatch>, Vec<BadRecord>, usize, DecodeError) {
    let mut d = CdnAccessDecoder::new(NAME, opts, ctx).holding(0);
    let (mut batches, mut bad, mut fed) = (Vec::new(), Vec::new(), 0);
    for chunk in file.chunks(64 << 10) {
        fed += chunk.len();
        let r = d.decode(chunk, &mut batches);
        bad.extend(d.take_bad_records());
        if let Err(e) = r {
            return (batches, bad, fed, e);
        }
    }
    panic!("the bomb was decoded whole ({} rows)", rows(&batches).len());
}

#[test]
fn a_held_bomb_fails_at_the_end_like_a_streamed_one() {
    // A small compressed file is held until it ends; its trailer announces 1 GiB, more than is
    // ever inflated whole, so it is then streamed and stops at the cap with the same error.
    let file = testing::gzip_bomb(&vec![0u8; 1 << 20], 1024);
    assert!(file.len() < WHOLE_FILE_BYTES);
    let opts = CdnAccessOptions {
        max_decompressed_bytes: 256 << 20,
        ..CdnAccessOptions::default()
    };
    let (_, _, _, streamed) = feed_bomb(&file, opts, ctx(BadRecordPolicy::Skip, 1000));
    let mut d = CdnAccessDecoder::new(NAME, opts, ctx(BadRecordPolicy::Skip, 1000));
    let mut batches = Vec::new();
    for chunk in file.chunks(64 << 10) {
        d.decode(chunk, &mut batches).expect("held, not decoded yet");
    }
    let held = d.finish(&mut batches).unwrap_err();
    assert!(batches.is_empty());
    assert_eq!(d.take_bad_records().len(), 1);
    assert_eq!(held.to_string(), streamed.to_string());
}

#[test]
fn a_one_gib_gzip_bomb_stops_at_the_decompressed_cap() {
    let file = testing::gzip_bomb(&vec![0u8; 1 << 20], 1024);
    assert!(file.len() < 2 << 20, "1 GiB of zeros in {} bytes", file.len());
    // Under `skip` the endless line is dropped as it streams (never buffered), so only the cap
    // stops the file; its error names the file and the cap.
    let opts = CdnAccessOptions {
        max_decompressed_bytes: 256 << 20,
        ..CdnAccessOptions::default()
    };
    let (batches, bad, fed, err) = feed_bomb(&file, opts, ctx(BadRecordPolicy::Skip, 1000));
    assert!(batches.is_empty());
    assert_eq!(bad.len(), 1, "the one over-long line is counted once");
    assert_eq!(bad[0].reason, "line longer than 65536 bytes (max_line_bytes)");
    assert!(
        fed < file.len() / 2,
        "stopped early: {fed} of {} bytes read",
        file.len()
    );
    match err {
        DecodeError::Malformed { what, line, reason } => {
            assert_eq!((what, line), ("gzip access log", 1));
            assert_eq!(
                reason,
                format!(
                    "{NAME}: more than {} bytes after decompression: refused as a likely gzip bomb \
                     (raise max_decompressed_bytes if the file is genuine)",
                    256 << 20
                )
            );
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    // Under `fail`, with the default 16 GiB cap, the first line past max_line_bytes stops it.
    let (batches, _, fed, err) = feed_bomb(&file, CdnAccessOptions::default(), DecodeContext::default());
    assert!(batches.is_empty());
    assert!(fed <= 64 << 10, "{fed}");
    assert!(
        matches!(&err, DecodeError::BadRecord { line: 1, reason, .. } if reason.starts_with("line longer than 65536 bytes")),
        "{err:?}"
    );
}

#[test]
fn a_bomb_of_valid_lines_stops_at_the_cap_and_fails_the_file() {
    // 1 GiB of good lines: rows come out until the cap, then the file fails as a whole (the
    // runner commits nothing of a failed payload).
    let unit: String = std::iter::repeat_n(format!("{GOOD}\n"), (1 << 20) / (GOOD.len() + 1)).collect();
    let file = testing::gzip_bomb(unit.as_bytes(), 1024);
    let cap = 4 << 20;
    let opts = CdnAccessOptions {
        max_decompressed_bytes: cap,
        ..CdnAccessOptions::default()
    };
    let (batches, bad, _, err) = feed_bomb(&file, opts, DecodeContext::default());
    assert!(bad.is_empty());
    let decoded = rows(&batches).len() as u64;
    assert!(decoded <= cap / (GOOD.len() as u64 + 1), "{decoded} rows past the cap");
    assert!(err.to_string().contains("refused as a likely gzip bomb"), "{err}");
}

#[test]
fn a_directive_that_is_not_utf8_is_skipped_like_any_directive() {
    // Directives are never interpreted, so their bytes do not matter; the line numbers after them
    // still count them.
    let mut text = b"#Software: \xFF\xFE vendor\n".to_vec();
    let mut bad = GOOD.as_bytes().to_vec();
    bad[3] = 0xC3; // a lead byte without its continuation
    text.extend(format!("{GOOD}\n").as_bytes());
    text.extend(&bad);
    text.extend(format!("\n{GOOD}\n").as_bytes());
    let file = gzip(&text);
    for cuts in [vec![], (0..file.len()).collect::<Vec<_>>()] {
        let (batches, skipped) = decode_gz_cuts(&file, &cuts, ctx(BadRecordPolicy::Skip, 10)).unwrap();
        assert_eq!(rows(&batches), vec![good_row(), good_row()]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].line, 3);
        assert_eq!(skipped[0].reason, "invalid UTF-8 at byte 3 of the line");
    }
}

#[test]
fn numbers_with_leading_zeros_past_nineteen_digits_still_parse() {
    // Up to 19 digits take the fast path, longer ones the overflow-checked one: both give the
    // value, whatever the zeros in front.
    let cases = [
        ("1843210", 1_843_210),
        ("0000000000001843210", 1_843_210),
        ("00000000000000000001843210", 1_843_210),
        ("9999999999999999999", 9_999_999_999_999_999_999),
        ("18446744073709551615", u64::MAX),
        ("000000000000000000000018446744073709551615", u64::MAX),
    ];
    for (digits, want) in cases {
        let line = GOOD.replacen(" 1843210 ", &format!(" {digits} "), 1);
        let got = decode_ok(&format!("{line}\n"));
        assert_eq!(got[0].bytes, Some(want), "{digits}");
    }
}
