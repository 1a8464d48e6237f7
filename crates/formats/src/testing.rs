//! The test harness every decoder's tests share: feed a payload cut at arbitrary offsets, the
//! way the runner does (draining bad records and unknown fields after every call), and check
//! that an error does not depend on where the input was cut.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use chrono::DateTime;
use etl_core::{BadRecord, BadRecordPolicy, DecodeContext, DecodeError, Format, PayloadMeta};

/// Everything one payload decoded to.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub batches: Vec<RecordBatch>,
    pub bad: Vec<BadRecord>,
    /// Unknown-field counts, summed over the calls, sorted by name.
    pub unknown: Vec<(String, u64)>,
}

/// Decodes `input` cut at `cuts` (offsets, any order, duplicates allowed).
pub(crate) fn decode_cuts(
    format: &dyn Format,
    input: &[u8],
    cuts: &[usize],
    ctx: DecodeContext,
) -> Result<Decoded, DecodeError> {
    decode_cuts_meta(format, &PayloadMeta::default(), input, cuts, ctx)
}

/// [`decode_cuts`] for a payload described by `meta`.
pub(crate) fn decode_cuts_meta(
    format: &dyn Format,
    meta: &PayloadMeta,
    input: &[u8],
    cuts: &[usize],
    ctx: DecodeContext,
) -> Result<Decoded, DecodeError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.sort_unstable();
    let mut d = format.decoder(meta, ctx);
    let mut batches = Vec::new();
    let mut bad = Vec::new();
    let mut unknown: BTreeMap<String, u64> = BTreeMap::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([input.len()]) {
        d.decode(&input[start..c], &mut batches)?;
        bad.extend(d.take_bad_records());
        for (name, n) in d.take_unknown_fields() {
            *unknown.entry(name).or_default() += n;
        }
        start = c;
    }
    d.finish(&mut batches)?;
    bad.extend(d.take_bad_records());
    for (name, n) in d.take_unknown_fields() {
        *unknown.entry(name).or_default() += n;
    }
    Ok(Decoded {
        batches,
        bad,
        unknown: unknown.into_iter().collect(),
    })
}

/// The error of `input`, checking that feeding it byte by byte fails the same way.
pub(crate) fn decode_err(format: &dyn Format, input: &[u8], ctx: DecodeContext) -> DecodeError {
    let whole = decode_cuts(format, input, &[], ctx).expect_err("the page must be rejected");
    let cuts: Vec<usize> = (0..input.len()).collect();
    let split = decode_cuts(format, input, &cuts, ctx).expect_err("the page must be rejected byte by byte too");
    assert_eq!(whole.to_string(), split.to_string(), "chunking changed the error");
    whole
}

/// The line and reason of a `Malformed` error for `input`, whose `what` must be `what`.
pub(crate) fn malformed(format: &dyn Format, what: &str, input: &[u8]) -> (u64, String) {
    match decode_err(format, input, DecodeContext::default()) {
        DecodeError::Malformed {
            what: got,
            line,
            reason,
        } => {
            assert_eq!(got, what);
            (line, reason)
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

pub(crate) fn ctx(policy: BadRecordPolicy, batch_size: usize) -> DecodeContext {
    DecodeContext {
        policy,
        batch_size,
        ..DecodeContext::default()
    }
}

/// Epoch microseconds of an RFC 3339 time.
pub(crate) fn micros(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
}

/// `text` as one gzip member (default level, as `gzip` writes it).
pub(crate) fn gzip(text: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text).unwrap();
    e.finish().unwrap()
}

/// `text` cut at `cuts` (offsets, any order) and each piece gzipped as its own member, the
/// members concatenated: one multi-member file. Empty pieces give empty members.
pub(crate) fn gzip_members(text: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(text.len())).collect();
    cuts.sort_unstable();
    let mut file = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([text.len()]) {
        file.extend(gzip(&text[start..c]));
        start = c;
    }
    file
}

/// One gzip member whose content is `unit` repeated `repeats` times, built without ever
/// holding the content: `unit` is deflated once with a full flush (which resets the
/// compressor, so every copy of it compresses to the same bytes) and that segment repeated.
/// 1 MiB of zeros repeated 1024 times is a 1 GiB bomb of about 1 MiB.
pub(crate) fn gzip_bomb(unit: &[u8], repeats: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut c = Compress::new(Compression::best(), false);
    let mut segment = |input: &[u8], flush: FlushCompress| {
        let start = c.total_in();
        let mut out = Vec::new();
        loop {
            out.reserve(64 * 1024);
            let consumed = (c.total_in() - start) as usize;
            let status = c.compress_vec(&input[consumed..], &mut out, flush).unwrap();
            let all_in = (c.total_in() - start) as usize == input.len();
            let room_left = out.len() < out.capacity();
            if status == Status::StreamEnd || (flush != FlushCompress::Finish && all_in && room_left) {
                return out;
            }
        }
    };
    let first = segment(unit, FlushCompress::Full);
    assert_eq!(
        segment(unit, FlushCompress::Full),
        first,
        "a full flush makes copies identical"
    );
    let tail = segment(&[], FlushCompress::Finish);
    let mut crc = flate2::Crc::new();
    for _ in 0..repeats {
        crc.update(unit);
    }
    let mut file = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    for _ in 0..repeats {
        file.extend_from_slice(&first);
    }
    file.extend_from_slice(&tail);
    file.extend_from_slice(&crc.sum().to_le_bytes());
    file.extend_from_slice(&crc.amount().to_le_bytes());
    file
}
