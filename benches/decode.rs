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
use etl_core::{BadRecordPolicy, DecodeContext, Format, PayloadMeta};
use etl_formats::mail_delivery::MailDeliveryFormat;

/// Batch size the runner uses by default.
const BATCH_SIZE: usize = 16 * 1024;

/// Decodes one whole payload the way the runner does (one `decode`, then `finish`) and returns
/// the number of rows, black-boxing the batches.
fn decode_payload(format: &dyn Format, payload: &[u8]) -> usize {
    let ctx = DecodeContext {
        policy: BadRecordPolicy::Fail,
        batch_size: BATCH_SIZE,
        ..DecodeContext::default()
    };
    let mut decoder = format.decoder(&PayloadMeta::default(), ctx);
    let mut out = Vec::new();
    decoder
        .decode(black_box(payload), &mut out)
        .expect("bench payload decodes");
    decoder.finish(&mut out).expect("bench payload is complete");
    let rows = out.iter().map(|b| b.num_rows()).sum();
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

criterion_group!(benches, mail_delivery_xml);
criterion_main!(benches);
