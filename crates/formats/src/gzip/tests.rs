//! The inflater is checked on every way a gzip file can end well or badly, and on every chunk
//! size: the output and the error must not depend on where the input was cut.

use flate2::{Compress, Compression, FlushCompress};

use super::*;
use crate::testing::{gzip, gzip_members};

/// Everything `input` inflates to when fed in chunks of `chunk` bytes, and how it ended.
fn run(input: &[u8], chunk: usize, cap: u64) -> (Vec<u8>, Result<(), GzipError>) {
    let mut d = GzipDecoder::new(cap);
    let mut text = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        let mut rest = piece;
        loop {
            match d.read(&mut rest) {
                Ok(Some(out)) => text.extend_from_slice(out),
                Ok(None) => break,
                Err(e) => return (text, Err(e)),
            }
        }
        assert!(rest.is_empty(), "read returned None before using up its input");
    }
    let end = d.finish();
    (text, end)
}

/// Runs `input` whole and in chunks of 1, 2, 3, 7 and 4096 bytes, checks they all agree, and
/// returns the result.
fn run_all(input: &[u8], cap: u64) -> (Vec<u8>, Result<(), GzipError>) {
    let whole = run(input, input.len(), cap);
    for chunk in [1, 2, 3, 7, 4096] {
        assert_eq!(run(input, chunk, cap), whole, "chunks of {chunk}");
    }
    whole
}

fn inflate(input: &[u8]) -> Result<Vec<u8>, GzipError> {
    let (text, end) = run_all(input, u64::MAX);
    end.map(|()| text)
}

fn error(input: &[u8]) -> GzipError {
    inflate(input).expect_err("the input must be refused")
}

/// Some text that compresses well but not trivially.
fn text(lines: usize) -> Vec<u8> {
    (0..lines)
        .map(|i| {
            format!(
                "line {i} of the test text, {} {}\n",
                i * 7919 % 1000,
                "é日".repeat(i % 5)
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// Raw deflate of `data`.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    c.compress_vec(data, &mut out, FlushCompress::Finish).unwrap();
    out
}

/// A member written by hand, with the optional header fields set by `flags` (FTEXT 1, FHCRC 2,
/// FEXTRA 4, FNAME 8, FCOMMENT 16).
fn member_with_header(data: &[u8], flags: u8) -> Vec<u8> {
    let mut m = vec![0x1f, 0x8b, 8, flags, 0x12, 0x34, 0x56, 0x78, 0, 3];
    if flags & 4 != 0 {
        m.extend([6, 0, b'A', b'B', 2, 0, b'x', b'y']);
    }
    if flags & 8 != 0 {
        m.extend(b"20250911175500.log\0");
    }
    if flags & 16 != 0 {
        m.extend("a comment, é\0".as_bytes());
    }
    if flags & 2 != 0 {
        let mut crc = flate2::Crc::new();
        crc.update(&m);
        m.extend(&(crc.sum() as u16).to_le_bytes());
    }
    m.extend(deflate(data));
    let mut crc = flate2::Crc::new();
    crc.update(data);
    m.extend(crc.sum().to_le_bytes());
    m.extend((data.len() as u32).to_le_bytes());
    m
}

#[test]
fn one_member_inflates_whatever_the_chunks() {
    let t = text(200);
    assert_eq!(inflate(&gzip(&t)).unwrap(), t);
}

#[test]
fn every_member_of_a_multi_member_file_is_inflated() {
    let t = text(300);
    let file = gzip_members(&t, &[100, 2_000, 2_000, 5_555]);
    assert_eq!(inflate(&file).unwrap(), t);
    let mut d = GzipDecoder::new(u64::MAX);
    let mut input = &file[..];
    while d.read(&mut input).unwrap().is_some() {}
    d.finish().unwrap();
    assert_eq!(d.members(), 5, "four cuts, one of them twice: five members, one empty");
    assert_eq!(d.total_out(), t.len() as u64);
}

#[test]
fn optional_header_fields_are_parsed() {
    let t = text(20);
    for flags in [0, 1, 2, 4, 8, 16, 2 | 4 | 8 | 16, 31] {
        let mut file = member_with_header(&t, flags);
        file.extend(member_with_header(b"second\n", flags));
        let mut expected = t.clone();
        expected.extend(b"second\n");
        assert_eq!(inflate(&file).unwrap(), expected, "flags {flags}");
    }
}

#[test]
fn output_larger_than_the_buffer_comes_in_pieces() {
    // Very compressible: a few kilobytes of input inflate to many buffers.
    let t =
        b"2025-09-11T17:55:00.000Z 203.0.113.1 GET \"/a\" HTTP/1.1 200 1 1 \"-\" \"-\" HIT NRT01 x\n".repeat(40_000);
    assert!(t.len() > 10 * OUTPUT_BUFFER);
    let file = gzip_members(&t, &[t.len() / 3]);
    let (text, end) = run_all(&file, u64::MAX);
    end.unwrap();
    assert_eq!(text, t);
    let mut d = GzipDecoder::new(u64::MAX);
    let mut input = &file[..];
    let mut pieces = 0;
    while let Some(out) = d.read(&mut input).unwrap() {
        assert!(out.len() <= OUTPUT_BUFFER);
        pieces += 1;
    }
    assert!(pieces > 10, "{pieces} pieces");
}

#[test]
fn an_empty_file_is_not_gzip() {
    assert_eq!(error(b""), GzipError::Empty);
    assert_eq!(error(b"").to_string(), "the file is empty (0 bytes), not gzip");
}

#[test]
fn a_file_that_is_not_gzip_is_refused() {
    assert_eq!(error(b"2025-09-11T17:55:00.000Z plain text\n"), GzipError::NotGzip);
    assert_eq!(error(b"\x1f\x8a rest"), GzipError::NotGzip);
    assert_eq!(error(b"<html>Forbidden</html>"), GzipError::NotGzip);
}

#[test]
fn every_truncation_is_an_error() {
    let t = text(50);
    let one = gzip(&t);
    let two = gzip_members(&t, &[t.len() / 2]);
    let first_len = gzip(&t[..t.len() / 2]).len() as u64;
    for cut in 1..one.len() {
        assert_eq!(
            error(&one[..cut]),
            GzipError::Truncated { member: 1, offset: 0 },
            "cut at {cut}"
        );
    }
    for cut in first_len as usize + 1..two.len() {
        assert_eq!(
            error(&two[..cut]),
            GzipError::Truncated {
                member: 2,
                offset: first_len
            },
            "cut at {cut}"
        );
    }
    // Cut right after a member: a shorter, but complete, file.
    assert_eq!(inflate(&two[..first_len as usize]).unwrap(), &t[..t.len() / 2]);
    assert_eq!(
        error(&one[..one.len() - 1]).to_string(),
        "the file is truncated: gzip member 1 (starting at compressed byte 0) has no end"
    );
}

#[test]
fn bytes_after_a_member_must_start_another_member() {
    let t = text(10);
    let one = gzip(&t);
    let len = one.len() as u64;
    for garbage in [
        &b"\0"[..],
        b"\0\0\0\0",
        b"\n",
        b"\x1f\x00",
        b"\x8b\x1f",
        b"trailing text",
    ] {
        let mut file = one.clone();
        file.extend(garbage);
        let (text, end) = run_all(&file, u64::MAX);
        assert_eq!(text, t, "the member before the garbage is inflated");
        assert_eq!(end, Err(GzipError::TrailingGarbage { member: 1, offset: len }));
    }
    let mut file = one.clone();
    file.push(0x1f);
    assert_eq!(error(&file), GzipError::Truncated { member: 2, offset: len });
    let mut file = gzip_members(&t, &[3]);
    file.extend(b"x");
    let e = error(&file);
    assert_eq!(
        e.to_string(),
        format!(
            "the bytes after gzip member 2, at compressed byte {}, are not another gzip member",
            file.len() - 1
        )
    );
}

#[test]
fn a_bad_crc_or_length_is_corrupt() {
    let t = text(40);
    let good = gzip(&t);
    let n = good.len();
    let mut bad_crc = good.clone();
    bad_crc[n - 8] ^= 1;
    let (text, end) = run_all(&bad_crc, u64::MAX);
    assert_eq!(text, t, "the data is handed out before the trailer is checked");
    assert_eq!(
        end.unwrap_err().to_string(),
        "gzip member 1 (starting at compressed byte 0) is corrupt: CRC-32 mismatch (incorrect data check)"
    );
    let mut bad_len = good.clone();
    bad_len[n - 4] ^= 1;
    assert!(
        matches!(error(&bad_len), GzipError::Corrupt { member: 1, offset: 0, message } if message.starts_with("ISIZE mismatch"))
    );

    // In a later member, named by its number and start.
    let mut file = gzip(b"first\n");
    let start = file.len() as u64;
    file.extend(bad_crc);
    assert!(matches!(error(&file), GzipError::Corrupt { member: 2, offset, .. } if offset == start));
}

#[test]
fn corrupt_data_and_headers_are_corrupt() {
    let t = text(40);
    let good = gzip(&t);
    let message = |file: &[u8]| match error(file) {
        GzipError::Corrupt {
            member: 1,
            offset: 0,
            message,
        } => message,
        other => panic!("expected Corrupt, got {other:?}"),
    };
    let mut bad_method = good.clone();
    bad_method[2] = 7;
    assert_eq!(message(&bad_method), "bad gzip header (unknown compression method)");
    let mut reserved_flag = good.clone();
    reserved_flag[3] = 0x80;
    assert_eq!(message(&reserved_flag), "bad gzip header (unknown header flags set)");
    let mut bad_header_crc = member_with_header(&t, 2 | 8);
    bad_header_crc[10] ^= 1; // a letter of the file name
    assert_eq!(message(&bad_header_crc), "bad gzip header (header crc mismatch)");

    // Damage anywhere in the deflate data: the output before the damage and the error are the
    // same whatever the chunks (run_all checks it), and the error is a deflate error, a trailer
    // mismatch, a stream that ends too late (truncated) or too early (the rest is garbage).
    for at in 10..good.len() - 8 {
        for flip in [0x01, 0x55, 0xFF] {
            let mut bad = good.clone();
            bad[at] ^= flip;
            match inflate(&bad) {
                Err(
                    GzipError::Corrupt {
                        member: 1, offset: 0, ..
                    }
                    | GzipError::Truncated { member: 1, offset: 0 }
                    | GzipError::TrailingGarbage { member: 1, .. },
                ) => {}
                other => panic!("damage {flip:#x} at {at}: {other:?}"),
            }
        }
    }
}

#[test]
fn the_decompressed_size_is_capped() {
    let t = text(100);
    let file = gzip_members(&t, &[t.len() / 2]);
    let size = t.len() as u64;
    assert_eq!(run_all(&file, size).1, Ok(()), "exactly the cap is allowed");
    let (text, end) = run_all(&file, size - 1);
    assert_eq!(end, Err(GzipError::TooLarge { limit: size - 1 }));
    assert_eq!(
        text,
        &t[..t.len() - 1],
        "output up to the cap is handed out, never beyond"
    );
    let (text, end) = run_all(&file, 10);
    assert_eq!(text, &t[..10]);
    assert!(
        end.unwrap_err()
            .to_string()
            .starts_with("more than 10 bytes after decompression")
    );
    let (text, end) = run_all(&file, 0);
    assert!(text.is_empty());
    assert_eq!(end, Err(GzipError::TooLarge { limit: 0 }));
}

#[test]
fn an_error_is_returned_again_on_every_call() {
    let mut d = GzipDecoder::new(u64::MAX);
    let mut input = &b"nope"[..];
    assert_eq!(d.read(&mut input), Err(GzipError::NotGzip));
    let mut more = &gzip(b"x")[..];
    assert_eq!(d.read(&mut more), Err(GzipError::NotGzip));
    assert_eq!(d.finish(), Err(GzipError::NotGzip));
}

#[test]
fn a_bomb_is_refused_without_inflating_it_whole() {
    // 64 MiB of zeros compress to about 64 KiB; with a 1 MiB cap, only the first buffers are
    // inflated before the refusal.
    let zeros = vec![0u8; 64 << 20];
    let file = gzip(&zeros);
    assert!(file.len() < 1 << 17);
    let mut d = GzipDecoder::new(1 << 20);
    let mut input = &file[..];
    let mut total = 0;
    let err = loop {
        match d.read(&mut input) {
            Ok(Some(out)) => total += out.len(),
            Ok(None) => panic!("the bomb must be refused"),
            Err(e) => break e,
        }
    };
    assert_eq!(total, 1 << 20);
    assert_eq!(err, GzipError::TooLarge { limit: 1 << 20 });
    assert!(!input.is_empty(), "the rest of the input is left alone");
}

#[test]
fn a_one_gib_bomb_is_a_valid_file_that_only_the_cap_refuses() {
    let file = crate::testing::gzip_bomb(&vec![0u8; 1 << 20], 1024);
    let inflate = |cap: u64| {
        let mut d = GzipDecoder::new(cap);
        let mut total = 0u64;
        for chunk in file.chunks(64 << 10) {
            let mut input = chunk;
            loop {
                match d.read(&mut input) {
                    Ok(Some(out)) => total += out.len() as u64,
                    Ok(None) => break,
                    Err(e) => return (total, Err(e)),
                }
            }
        }
        (total, d.finish())
    };
    // Whole, it is exactly 1 GiB with a good CRC-32 and ISIZE: the test bomb is real.
    assert_eq!(inflate(u64::MAX), (1 << 30, Ok(())));
    let cap = (1 << 30) - 1;
    assert_eq!(inflate(cap), (cap, Err(GzipError::TooLarge { limit: cap })));
}
