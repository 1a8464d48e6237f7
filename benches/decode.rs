//! Decoder throughput, in bytes of payload per second on one core.
//!
//! Decoding runs on the blocking pool while the network is awaited, so a decoder slower than the
//! network would make it the bottleneck of a whole run. Each bench builds a realistic payload in
//! memory (no fixtures, no I/O), feeds it through the format's public [`Format`] interface the
//! way the runner does, and reports `Throughput::Bytes`. To add a format: write a payload
//! builder and a bench function like [`mail_delivery_xml`] and list it in `criterion_group!`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};
use etl_core::{BadRecordPolicy, DecodeContext, Decoder, Format, PayloadMeta};
use etl_formats::audit_log::{AuditLogFormat, AuditLogOptions};
use etl_formats::cdn_access::{AccessLineDecoder, CdnAccessFormat, CdnAccessOptions};
use etl_formats::event_log::{EventLogFormat, EventLogOptions};
use etl_formats::mail_delivery::MailDeliveryFormat;
use etl_formats::mail_tracking::MailTrackingFormat;

/// Batch size the runner uses by default.
const BATCH_SIZE: usize = 16 * 1024;

/// Decodes one whole payload the way the runner does (one `decode`, then `finish`) and returns
/// the number of rows, black-boxing the batches.
fn decode_payload(format: &dyn Format, payload: &[u8]) -> usize {
    decode_chunks(
        format.decoder(&PayloadMeta::default(), bench_ctx()),
        payload,
        payload.len(),
    )
}

fn bench_ctx() -> DecodeContext {
    DecodeContext {
        policy: BadRecordPolicy::Fail,
        batch_size: BATCH_SIZE,
        ..DecodeContext::default()
    }
}

/// Feeds `payload` to `decoder` in chunks of `chunk` bytes, then finishes it; returns the number
/// of rows, black-boxing the batches.
fn decode_chunks(mut decoder: Box<dyn Decoder>, payload: &[u8], chunk: usize) -> usize {
    let mut out = Vec::new();
    let mut rows = 0;
    for piece in black_box(payload).chunks(chunk.max(1)) {
        decoder.decode(piece, &mut out).expect("bench payload decodes");
        // Batches leave as they are made, as in the runner: memory stays flat.
        rows += out.iter().map(|b| b.num_rows()).sum::<usize>();
        black_box(&out);
        out.clear();
    }
    decoder.finish(&mut out).expect("bench payload is complete");
    rows += out.iter().map(|b| b.num_rows()).sum::<usize>();
    black_box(out);
    rows
}

/// Registers one payload benchmark in `group`: throughput in payload bytes, and a check that
/// the payload decodes to the rows it was built with.
fn bench_payload(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    format: &dyn Format,
    payload: &[u8],
    rows: usize,
) {
    assert_eq!(
        decode_payload(format, payload),
        rows,
        "{name}: the bench payload must decode completely"
    );
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function(name, |b| b.iter(|| decode_payload(format, payload)));
}

/// A small deterministic generator, so every run measures the same bytes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// A `GetDeliveryLog` page of `lines` `<Log>` lines, pretty-printed like the seed's example:
/// varied senders and recipients (some with `+tags`, apostrophes and non-ASCII), mostly `sent`,
/// and about 5% of lines with XML entities (an address with `&apos;`, a detail with
/// `&lt;...&gt;`).
fn mail_delivery_page(lines: usize) -> Vec<u8> {
    const LOCALS: &[&str] = &[
        "info",
        "noreply",
        "news",
        "taro.yamada",
        "hanako_suzuki",
        "support",
        "billing",
        "user1234",
        "j.smith",
    ];
    const DOMAINS: &[&str] = &[
        "example.com",
        "example.jp",
        "mail.example.co.jp",
        "corp.example.net",
        "example.org",
        "docomo.example.ne.jp",
    ];
    const ODD_LOCALS: &[&str] = &["taro+news", "hanako+shop-2025", "ユーザー", "müller", "o'neil"];
    const DETAILS: &[(&str, u16, &str)] = &[
        ("sent", 250, "250_2.0.0_Ok:_queued_as_4B2F31A0C7"),
        ("sent", 250, "250_ok:__Message_81234567_accepted"),
        (
            "sent",
            250,
            "250_2.0.0_OK__1757577600_d9443c01a7336-24b0e0f4a1esi1234567pfb.123_-_gsmtp",
        ),
        ("retry", 421, "421_4.7.0_Try_again_later,_closing_connection."),
        (
            "retry",
            450,
            "450_4.2.1_The_user_you_are_trying_to_contact_is_receiving_mail_too_quickly",
        ),
        (
            "faild",
            550,
            "550_5.1.1_The_email_account_that_you_tried_to_reach_does_not_exist",
        ),
        ("faild", 554, "554_5.7.1_Message_rejected_due_to_content_restrictions"),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut page = String::with_capacity(lines * 220);
    page.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetDeliveryLogResponse>\n  <GetDeliveryLogResult>\n");
    page.push_str(&format!("    <LogCount>{lines}</LogCount>\n"));
    for i in 0..lines {
        let secs = i * 86_399 / lines.max(1);
        let (result, status, detail) = DETAILS[if rng.below(10) < 8 {
            rng.below(3)
        } else {
            3 + rng.below(4)
        }];
        let sender = format!("{}@{}", rng.pick(LOCALS), rng.pick(DOMAINS));
        let local = if rng.below(10) == 0 {
            rng.pick(ODD_LOCALS)
        } else {
            rng.pick(LOCALS)
        };
        let mut recipient = format!("{local}{}@{}", rng.below(1000), rng.pick(DOMAINS));
        let mut detail = detail.to_string();
        if rng.below(20) == 0 {
            // The ~5% of lines with entities.
            if rng.below(2) == 0 {
                recipient = format!("o&apos;brien{}@{}", rng.below(1000), rng.pick(DOMAINS));
            } else {
                detail = format!("{status}_5.1.1_&lt;{recipient}&gt;:_Recipient_address_rejected");
            }
        }
        page.push_str(&format!(
            "    <Log>2025-09-11 {:02}:{:02}:{:02} {result} {status} a123.example.jp.{:016} {sender} {recipient} {detail}</Log>\n",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            rng.next() % 10_000_000_000_000_000,
        ));
    }
    page.push_str(
        "    <NextToken>rO0ABXNyADljb20ubmlmdHkuY2xvdWQuZXNzLmFwaS5hY3Rpb24ucGFyYW0uRGVsaXZlcnlMb2dO</NextToken>\n",
    );
    page.push_str(
        "  </GetDeliveryLogResult>\n  <ResponseMetadata>\n    \
         <RequestId>647cd254-e0d1-44a9-af61-1d6d86ea6b77</RequestId>\n  </ResponseMetadata>\n\
         </GetDeliveryLogResponse>\n",
    );
    page.into_bytes()
}

fn mail_delivery_xml(c: &mut Criterion) {
    let page = mail_delivery_page(10_000);
    let mut group = c.benchmark_group("decode");
    group.measurement_time(Duration::from_secs(5)).sample_size(20);
    bench_payload(
        &mut group,
        "mail_delivery_xml_10k",
        &MailDeliveryFormat::new(),
        &page,
        10_000,
    );
    group.finish();
}

/// A mail tracking page of `records` log records, laid out like the seed's example (tab-indented,
/// one key per line, about 970 bytes a record): every record has the common fields and a
/// `headerTo` list; about three quarters are delivered mail with `deliveryTime`, the rest blocked
/// mail with a `reason`; half have attachments, half embedded URLs (both spellings of the key
/// occur); a quarter of the subjects are Japanese or accented, one in six uses `\u` escapes and
/// some names and subjects have escaped quotes.
fn mail_tracking_page(records: usize) -> Vec<u8> {
    const LOCALS: &[&str] = &[
        "info",
        "noreply",
        "taro.yamada",
        "hanako_suzuki",
        "billing",
        "j.smith",
        "support",
    ];
    const DOMAINS: &[&str] = &["example.com", "example.jp", "mail.example.co.jp", "corp.example.net"];
    const SUBJECTS: &[&str] = &[
        "response sample",
        "Your invoice for September",
        "Re: meeting notes (weekly sync)",
        "Password reset request",
        "【重要】ご請求金額のお知らせ",
        "Réunion de lundi: ordre du jour",
        "Order #48213 has shipped",
        "Fwd: \\\"quarterly\\\" report",
        "\\u65e5\\u672c\\u8a9e subject \\ud83d\\ude00",
        "Weekly newsletter \\u2014 issue 42",
        "お問い合わせありがとうございます",
        "Security alert for your account",
    ];
    const ACTIONS: &[(&str, bool)] = &[
        ("Delivered", true),
        ("Delivered", true),
        ("Delivered", true),
        ("Deferred", true),
        ("Bounced", true),
        ("Quarantined", false),
        ("Deleted", false),
    ];
    const FILES: &[&str] = &[
        "invoice.pdf",
        "report-2025Q3.xlsx",
        "写真.zip",
        "notes.docx",
        "test1.zip",
    ];
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut page = String::with_capacity(records * 1400);
    page.push_str(
        "{\n    \"nextToken\": \"Lu2XNNHim8CZpKoJEJKREJj6jpojvvROIwMK6xL+zILf8DsPpkW5W8/XhJiWH5tsJh8VrkdCIvpm\
         JPEd71JKaUVoxTzDTU8/3RZVvYMfxzSyGIl2XYpWj9Qo+wigLGpHY4w==\",\n    \"logs\": [",
    );
    for i in 0..records {
        let secs = 25_200 + i * 60 / records.max(1);
        let time = |offset: usize| {
            let s = secs + offset;
            format!(
                "2025-09-11T{:02}:{:02}:{:02}.{:03}Z",
                s / 3600,
                s / 60 % 60,
                s % 60,
                rng_ms(i, offset)
            )
        };
        let (action, delivered) = ACTIONS[rng.below(ACTIONS.len())];
        let sender = format!("{}@{}", rng.pick(LOCALS), rng.pick(DOMAINS));
        let recipient = format!("{}{}@{}", rng.pick(LOCALS), rng.below(100), rng.pick(DOMAINS));
        let mut r = String::with_capacity(1400);
        r.push_str(if i == 0 { "\n\t\t{" } else { ", {" });
        let mut field = |key: &str, value: String| {
            r.push_str(&format!("\n\t\t\t\"{key}\": {value},"));
        };
        field("genTime", format!("\"{}\"", time(1)));
        field("timestamp", format!("\"{}\"", time(0)));
        if delivered {
            field("deliveryTime", format!("\"{}\"", time(9)));
        }
        field("sender", format!("\"{sender}\""));
        field(
            "direction",
            format!("\"{}\"", if rng.below(3) == 0 { "out" } else { "in" }),
        );
        field(
            "messageID",
            format!(
                "\"<{:016x}-{:08x}@mta{}.example.com>\"",
                rng.next(),
                rng.next() as u32,
                rng.below(100)
            ),
        );
        field("subject", format!("\"{}\"", rng.pick(SUBJECTS)));
        field("size", (1_000 + rng.below(2_000_000)).to_string());
        field(
            "mailID",
            format!(
                "\"{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}\"",
                rng.next() as u32,
                rng.below(1 << 16),
                rng.below(1 << 12),
                rng.below(1 << 12),
                rng.next() & 0xFFFF_FFFF_FFFF
            ),
        );
        field("recipient", format!("\"{recipient}\""));
        field("action", format!("\"{action}\""));
        field(
            "tlsInfo",
            "\"upstreamTLS: TLS 1.2; downstreamTLS: TLS 1.3\"".to_string(),
        );
        field("headerFrom", format!("\"\\\"{}\\\" <{sender}>\"", rng.pick(LOCALS)));
        let to: Vec<String> = (0..1 + rng.below(3))
            .map(|k| format!("\n\t\t\t\t\"{}{k}@{}\"", rng.pick(LOCALS), rng.pick(DOMAINS)))
            .collect();
        field("headerTo", format!("[{}\n\t\t\t]", to.join(",")));
        field("senderIP", format!("\"203.0.113.{}\"", rng.below(256)));
        field("deliveredTo", format!("\"198.51.100.{}\"", rng.below(256)));
        if rng.below(2) == 0 {
            let files: Vec<String> = (0..1 + rng.below(2))
                .map(|_| {
                    format!(
                        "{{\n\t\t\t\t\t\"fileName\": \"{}\",\n\t\t\t\t\t\"sha256\": \"{:016x}{:016x}{:016x}{:016x}\"\n\t\t\t\t}}",
                        rng.pick(FILES),
                        rng.next(),
                        rng.next(),
                        rng.next(),
                        rng.next()
                    )
                })
                .collect();
            field("attachments", format!("[{}\n\t\t\t]", files.join(", ")));
        }
        if rng.below(2) == 0 {
            let urls: Vec<String> = (0..1 + rng.below(3))
                .map(|k| {
                    format!(
                        "\n\t\t\t\t\"https://www.example{k}.com/campaign/{}?utm_source=mail\"",
                        rng.below(10_000)
                    )
                })
                .collect();
            let key = if rng.below(4) == 0 {
                "embeddedUrl"
            } else {
                "embeddedUrls"
            };
            field(key, format!("[{}\n\t\t\t]", urls.join(",")));
        }
        if !delivered {
            field("reason", "\"Message matched a content filtering rule\"".to_string());
        }
        let details = if delivered {
            format!("\"250 2.0.0 Ok: queued as {:010X}\"", rng.next() & 0xFF_FFFF_FFFF)
        } else {
            "\"Blocked by policy: spam score 9.2\"".to_string()
        };
        r.push_str(&format!("\n\t\t\t\"details\": {details}\n\t\t}}"));
        page.push_str(&r);
    }
    page.push_str("\n\t]\n}\n");
    page.into_bytes()
}

/// Milliseconds for the `offset`-th timestamp of record `i`: deterministic, varied.
fn rng_ms(i: usize, offset: usize) -> usize {
    (i * 7919 + offset * 104_729) % 1000
}

fn mail_tracking_json(c: &mut Criterion) {
    let page = mail_tracking_page(500);
    let mut group = c.benchmark_group("decode");
    group.measurement_time(Duration::from_secs(5)).sample_size(20);
    bench_payload(
        &mut group,
        "mail_tracking_json_500",
        &MailTrackingFormat::new(),
        &page,
        500,
    );
    group.finish();
}

/// Decompressed text of a CDN access-log file of about `size` bytes, like a busy live-streaming
/// domain writes: the W3C directives, then lines about 330 bytes long. Mostly HLS segment and
/// playlist requests over HTTP/1.1 and HTTP/2, a quarter of them from IPv6 clients; real browser
/// and player user agents; 40% without a referer (`"-"`); about 3% of URLs with an escaped
/// quote or a backslash, 2% with raw UTF-8 and 1% with a space; cache status mostly `HIT`.
/// Returns the text and its number of records.
fn cdn_access_text(size: usize) -> (Vec<u8>, usize) {
    const AGENTS: &[&str] = &[
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.6533.103 Mobile Safari/537.36",
        "AppleCoreMedia/1.0.0.21G93 (iPhone; U; CPU OS 17_6 like Mac OS X; ja_jp)",
        "ExoPlayerLib/2.19.1 (Linux; Android 13) stagefright/1.2",
        "Mozilla/5.0 (X11; Linux x86_64; rv:129.0) Gecko/20100101 Firefox/129.0",
        "curl/8.5.0",
    ];
    const REFERERS: &[&str] = &[
        "https://www.example.com/watch?v=8f3a2c",
        "https://live.example.com/player/embed/ch1?autoplay=1",
        "https://m.example.jp/live/%E3%83%A9%E3%82%A4%E3%83%96",
    ];
    const METHODS: &[&str] = &["GET", "GET", "GET", "GET", "GET", "GET", "GET", "GET", "GET", "HEAD"];
    const PROTOCOLS: &[&str] = &["HTTP/1.1", "HTTP/1.1", "HTTP/2.0", "HTTP/2.0", "HTTP/3"];
    const STATUSES: &[u16] = &[200, 200, 200, 200, 200, 200, 200, 206, 304, 404];
    const CACHE: &[&str] = &["HIT", "HIT", "HIT", "HIT", "HIT", "HIT", "MISS", "MISS", "EXPIRED", "-"];
    const EDGES: &[&str] = &["NRT01", "NRT02", "KIX01", "HKG03", "SIN02", "LAX01"];
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    let mut text = String::with_capacity(size + 1024);
    text.push_str(
        "#Version: 1.0\n#Software: CDN delivery log service\n#Start-Date: 2025-09-11 17:55:00\n\
         #Fields: timestamp c-ip cs-method cs-uri cs-version sc-status sc-bytes time-taken-ms cs(Referer) \
         cs(User-Agent) x-cache-status x-edge-location x-request-id\n",
    );
    let mut rows = 0;
    while text.len() < size {
        let ms = (rows * 300_000 / (size / 330).max(1)).min(299_999);
        let ip = if rng.below(4) == 0 {
            format!("2001:db8:{:x}::{:x}", rng.below(0x10000), rng.below(0x10000))
        } else {
            format!(
                "{}.{}.{}.{}",
                1 + rng.below(223),
                rng.below(256),
                rng.below(256),
                rng.below(256)
            )
        };
        let url = match rng.below(100) {
            0..=2 => format!(
                "https://live.example.com/api/beacon?ev=\\\"play\\\"&path=C:\\\\tmp&n={}",
                rng.below(1000)
            ),
            3..=4 => format!("https://live.example.com/ライブ/チャンネル{}/index.m3u8", rng.below(10)),
            5 => format!("https://live.example.com/search?q=live stream {}", rng.below(1000)),
            6..=20 => format!(
                "https://live.example.com/hls/ch{}/playlist_{}.m3u8?token={:016x}",
                rng.below(20),
                rng.below(4),
                rng.next()
            ),
            _ => format!(
                "https://live.example.com/hls/ch{}/1080p/segment_{:06}.ts?token={:016x}",
                rng.below(20),
                rng.below(1_000_000),
                rng.next()
            ),
        };
        let referer = if rng.below(10) < 4 {
            "-".to_string()
        } else {
            rng.pick(REFERERS).to_string()
        };
        text.push_str(&format!(
            "2025-09-11T17:{:02}:{:02}.{:03}Z {ip} {} \"{url}\" {} {} {} {} \"{referer}\" \"{}\" {} {} {:016x}{:016x}\n",
            55 + ms / 60_000,
            ms / 1000 % 60,
            ms % 1000,
            rng.pick(METHODS),
            rng.pick(PROTOCOLS),
            STATUSES[rng.below(STATUSES.len())],
            rng.below(5_000_000),
            rng.below(2_000),
            rng.pick(AGENTS),
            rng.pick(CACHE),
            rng.pick(EDGES),
            rng.next(),
            rng.next(),
        ));
        rows += 1;
    }
    (text.into_bytes(), rows)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

/// The CDN access log, the heaviest input: the line decoder alone on decompressed text, and the
/// whole path (inflate, then lines) on the same text gzipped at level 6 and pushed in 64 KiB
/// chunks as a download arrives. Both count throughput in *decompressed* bytes, so the two are
/// comparable and the difference is the cost of inflating.
fn cdn_access(c: &mut Criterion) {
    let (text, rows) = cdn_access_text(8 << 20);
    let file = gzip(&text);
    eprintln!(
        "cdn_access: {rows} lines, {} bytes of text ({} bytes a line), {} bytes gzipped",
        text.len(),
        text.len() / rows,
        file.len()
    );
    let opts = CdnAccessOptions::default();
    let lines = || Box::new(AccessLineDecoder::new("bench.log", opts, bench_ctx())) as Box<dyn Decoder>;
    let format = CdnAccessFormat::new(opts);
    let meta = PayloadMeta {
        name: "20250911175500.log.gz".into(),
        ..PayloadMeta::default()
    };
    let gz = || format.decoder(&meta, bench_ctx());
    assert_eq!(
        decode_chunks(lines(), &text, text.len()),
        rows,
        "the bench text decodes completely"
    );
    assert_eq!(
        decode_chunks(gz(), &file, 64 << 10),
        rows,
        "the bench file decodes completely"
    );

    let mut group = c.benchmark_group("decode");
    group.measurement_time(Duration::from_secs(8)).sample_size(20);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("cdn_access_lines", |b| {
        b.iter(|| decode_chunks(lines(), &text, text.len()))
    });
    group.bench_function("cdn_access_gz", |b| b.iter(|| decode_chunks(gz(), &file, 64 << 10)));
    group.finish();
}

/// An audit-log export of about `size` bytes as the service writes it for `lang=JA`: a byte-order
/// mark, the Japanese header, CRLF, records about 145 bytes long over two local dates (`+09:00`).
/// Operators and target names are mostly Japanese; fields are quoted only when needed: about a
/// fifth of the target names hold a comma, 5% of the before/after values quotes, 1% a line break.
/// Logins and downloads leave the target fields empty. Returns the file and its number of records.
fn audit_csv_file(size: usize) -> (Vec<u8>, usize) {
    const OPERATORS: &[&str] = &["山田 太郎", "鈴木 花子", "api-user", "佐藤 一郎", "ops@example.jp"];
    const TOOLS: &[&str] = &["WEB", "WEB", "WEB", "API", "API", "EDITOR"];
    const EDITS: &[(&str, &str)] = &[
        ("ADD", "KEYWORD"),
        ("SET", "CAMPAIGN"),
        ("SET", "AD_GROUP"),
        ("SET", "AD"),
        ("REMOVE", "KEYWORD"),
        ("ADD", "AD"),
    ];
    const NAMES: &[&str] = &[
        "春のキャンペーン",
        "\"ブランド, 指名\"",
        "Winter sale 2025",
        "検索広告_リターゲティング",
        "\"新商品, 限定\"",
    ];
    const ITEMS: &[(&str, &str, &str)] = &[
        ("日予算", "1000", "2000"),
        ("入札価格", "45", "52"),
        ("配信状況", "ACTIVE", "PAUSED"),
        ("広告文", "\"「秋の\"\"特価\"\"」\"", "\"「冬の\"\"特価\"\"」\""),
        ("説明文", "\"送料無料\r\n本日限り\"", "\"送料無料\r\n今週限り\""),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut text = String::with_capacity(size + 1024);
    text.push_str(
        "\u{FEFF}操作ID,操作日時,アカウントID,操作者,利用ツール,操作種別,対象種別,対象ID,対象名,変更項目,変更前,変更後,影響件数,IPアドレス\r\n",
    );
    let mut rows = 0;
    while text.len() < size {
        let secs = (rows * 172_800 / (size / 144).max(1)).min(172_799);
        let (day, hour, minute, second) = (17 + secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
        let operator = rng.pick(OPERATORS);
        let tool = rng.pick(TOOLS);
        let ip = format!("203.0.113.{}", rng.below(256));
        let when = format!("2025-11-{day:02}T{hour:02}:{minute:02}:{second:02}+09:00");
        let record = match rng.below(20) {
            0 => format!(
                "{},{when},1234-567-890,{operator},{tool},LOGIN,ACCOUNT,,,,,,0,{ip}",
                100_000 + rows
            ),
            1 => format!(
                "{},{when},1234-567-890,{operator},{tool},DOWNLOAD,REPORT,{},,,,,1,{ip}",
                100_000 + rows,
                rng.below(100_000)
            ),
            _ => {
                let (operation, target) = EDITS[rng.below(EDITS.len())];
                let (item, mut before, mut after) = ITEMS[rng.below(ITEMS.len())];
                // Line breaks in about 1% of records, quotes in 5%: most values are plain.
                if (item == "説明文" && rng.below(20) != 0) || (item == "広告文" && rng.below(4) != 0) {
                    (before, after) = ("100", "200");
                }
                format!(
                    "{},{when},1234-567-890,{operator},{tool},{operation},{target},{},{},{item},{before},{after},{},{ip}",
                    100_000 + rows,
                    10_000_000 + rng.below(90_000_000),
                    rng.pick(NAMES),
                    1 + rng.below(50),
                )
            }
        };
        text.push_str(&record);
        text.push_str("\r\n");
        rows += 1;
    }
    (text.into_bytes(), rows)
}

/// A WebDAV event-log archive file of about `size` bytes as the log store writes it: every field
/// quoted, LF, records about 205 bytes long. Mostly server events (HTTP method, URL, status,
/// bytes); one in ten is a client event (`app.sync`, `app.error`) whose free-text result has a
/// comma, and a third of those have doubled quotes and a line break. Returns the file and its
/// number of records.
fn event_log_file(size: usize) -> (Vec<u8>, usize) {
    const METHODS: &[&str] = &["GET", "GET", "GET", "PUT", "PROPFIND", "POST", "DELETE", "MKCOL"];
    const LEVELS: &[&str] = &["[INFO ]", "[INFO ]", "[INFO ]", "[INFO ]", "[WARN ]", "[ERROR]"];
    const STATUSES: &[&str] = &["200", "200", "201", "204", "207", "404", "412"];
    const PATHS: &[&str] = &[
        "box1/data/records.json",
        "__ctl/Role",
        "box1/写真/2025/11/IMG_0042.jpg",
        "__log/archive",
        "box2/odata/Sales('A-1')",
    ];
    let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
    let mut text = String::with_capacity(size + 1024);
    let mut rows = 0;
    while text.len() < size {
        let ms = (rows * 86_400_000 / (size / 206).max(1)).min(86_399_999);
        let when = format!(
            "2025-11-18T{:02}:{:02}:{:02}.{:03}Z",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        );
        let key = format!(
            "PR{:04}_{:018}",
            rng.below(10_000),
            rng.next() % 1_000_000_000_000_000_000
        );
        let user = format!("https://cell{}.unit1.example/#user{}", rng.below(20), rng.below(1000));
        let object = format!("https://cell{}.unit1.example/{}", rng.below(20), rng.pick(PATHS));
        let record = if rng.below(10) == 0 {
            let result = match rng.below(3) {
                0 => "sync failed: 3 of 10 items, \"\"conflict\"\" on records.json\nretry scheduled".to_string(),
                _ => format!("synced {} items, 0 conflicts", rng.below(500)),
            };
            format!(
                "\"{when}\",\"{}\",\"{key}\",\"client\",\"https://app{}.example/\",\"{user}\",\"app.sync\",\"{object}\",\"{result}\",\"\"",
                rng.pick(LEVELS),
                rng.below(5),
            )
        } else {
            let schema = if rng.below(2) == 0 {
                String::new()
            } else {
                format!("https://app{}.example/", rng.below(5))
            };
            format!(
                "\"{when}\",\"{}\",\"{key}\",\"server\",\"{schema}\",\"{user}\",\"{}\",\"{object}\",\"{}\",\"{}\"",
                rng.pick(LEVELS),
                rng.pick(METHODS),
                rng.pick(STATUSES),
                rng.below(2_000_000),
            )
        };
        text.push_str(&record);
        text.push('\n');
        rows += 1;
    }
    (text.into_bytes(), rows)
}

/// The two CSV formats, pushed in 64 KiB chunks as a download arrives (so records cut by a chunk
/// end take the slow path at the usual rate). The audit export is decoded without a window: every
/// record becomes a row.
fn csv(c: &mut Criterion) {
    let (audit, audit_rows) = audit_csv_file(4 << 20);
    let (events, event_rows) = event_log_file(4 << 20);
    eprintln!(
        "audit_csv: {audit_rows} records, {} bytes; event_log_csv: {event_rows} records, {} bytes",
        audit.len(),
        events.len()
    );
    let meta = PayloadMeta {
        name: "bench.csv".into(),
        ..PayloadMeta::default()
    };
    let audit_format = AuditLogFormat::new(AuditLogOptions::default());
    let event_format = EventLogFormat::new(EventLogOptions::default());
    let audit_decoder = || audit_format.decoder(&meta, bench_ctx());
    let event_decoder = || event_format.decoder(&meta, bench_ctx());
    assert_eq!(
        decode_chunks(audit_decoder(), &audit, 64 << 10),
        audit_rows,
        "the audit bench file decodes completely"
    );
    assert_eq!(
        decode_chunks(event_decoder(), &events, 64 << 10),
        event_rows,
        "the event-log bench file decodes completely"
    );

    let mut group = c.benchmark_group("decode");
    group.measurement_time(Duration::from_secs(5)).sample_size(20);
    group.throughput(Throughput::Bytes(audit.len() as u64));
    group.bench_function("audit_csv", |b| {
        b.iter(|| decode_chunks(audit_decoder(), &audit, 64 << 10))
    });
    group.throughput(Throughput::Bytes(events.len() as u64));
    group.bench_function("event_log_csv", |b| {
        b.iter(|| decode_chunks(event_decoder(), &events, 64 << 10))
    });
    group.finish();
}

criterion_group!(benches, mail_delivery_xml, mail_tracking_json, cdn_access, csv);
criterion_main!(benches);
