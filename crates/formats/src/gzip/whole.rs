//! Inflating a whole single-member gzip file in one call, with libdeflate.
//!
//! Why: most CDN log files are a few kilobytes to a few megabytes, small enough to hold whole,
//! and libdeflate inflates a member held in memory about 1.25x faster than zlib-rs streams it
//! (criterion `decode/cdn_access_gz`, BENCHMARKS.md). libdeflate has no streaming interface, so
//! this is only a fast path: [`inflate_whole`] accepts a file only when it is exactly one member
//! that libdeflate decodes completely with a matching CRC-32 and ISIZE, ending at the file's last
//! byte. Everything else (several members, trailing bytes, a header CRC, damage of any kind)
//! returns `None`, and the caller decodes the same bytes with [`super::GzipDecoder`], which
//! reports the error in its own words. A file is therefore accepted or refused, with the same
//! message, whichever path reads it.
//!
//! The text of a whole file is one buffer, so all threads together hold at most
//! [`TEXT_BUDGET`] bytes of it: when many large files are decoded at once, those past the budget
//! stream instead, and memory stays bounded however many decoders run.
//!
//! libdeflate skips the optional header CRC (FHCRC) without checking it while zlib checks it, so
//! such files (rare) always take the streaming path.
//!
//! This is the crate's only `unsafe` code: one call into libdeflate's C interface.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// Header flag: the header carries a CRC-16, which libdeflate does not check.
const FHCRC: u8 = 0x02;

/// The smallest gzip member: a 10-byte header, an empty deflate block, an 8-byte trailer.
const MIN_MEMBER: usize = 18;

/// Decompressed bytes the whole-file buffers of all threads may hold at once.
pub(crate) const TEXT_BUDGET: usize = 32 << 20;

/// Bytes of [`TEXT_BUDGET`] granted and not yet released.
static TEXT_IN_USE: AtomicUsize = AtomicUsize::new(0);

/// A share of [`TEXT_BUDGET`], given back on drop.
#[derive(Debug)]
struct Grant(usize);

impl Grant {
    fn take(bytes: usize) -> Option<Self> {
        TEXT_IN_USE
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + bytes <= TEXT_BUDGET).then_some(used + bytes)
            })
            .ok()
            .map(|_| Self(bytes))
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        TEXT_IN_USE.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// The decompressed text of a whole file, holding its share of [`TEXT_BUDGET`].
#[derive(Debug)]
pub(crate) struct WholeText {
    text: Vec<u8>,
    _grant: Grant,
}

impl WholeText {
    pub(crate) fn text(&self) -> &[u8] {
        &self.text
    }
}

/// A libdeflate decompressor (about 10 KiB of tables), freed on drop.
struct Decompressor(NonNull<libdeflate_decompressor>);

impl Decompressor {
    fn new() -> Option<Self> {
        // SAFETY: no preconditions; a null return (out of memory) is handled.
        NonNull::new(unsafe { libdeflate_alloc_decompressor() }).map(Self)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `libdeflate_alloc_decompressor` and is freed once.
        unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

/// The text of `file` if it is one complete, valid gzip member of at most `max_output`
/// decompressed bytes, and the budget has room for it. On `None` the file must be decoded by
/// [`super::GzipDecoder`], which accepts several members and names what is wrong.
pub(crate) fn inflate_whole(file: &[u8], max_output: usize) -> Option<WholeText> {
    if file.len() < MIN_MEMBER || file[..3] != [0x1f, 0x8b, 8] || file[3] & FHCRC != 0 {
        return None;
    }
    // A single member's ISIZE is its exact size (below 4 GiB), so the output is allocated once;
    // several members, or a lying trailer, make libdeflate fail or stop early: refused below.
    let isize = u32::from_le_bytes(file[file.len() - 4..].try_into().ok()?) as usize;
    if isize > max_output {
        return None;
    }
    let grant = Grant::take(isize)?;
    let d = Decompressor::new()?;
    // Not zeroed first: libdeflate writes every byte it reports (zeroing cost ~2% of the decode).
    let mut out: Vec<u8> = Vec::with_capacity(isize);
    let (mut used, mut produced) = (0usize, 0usize);
    // SAFETY: `file` is valid for reads of its length and `out` for writes of `isize` bytes (at
    // most its capacity) for the whole call, and they do not overlap; libdeflate writes at most
    // `isize` bytes and sets the two counts before returning; the decompressor is used by this
    // thread only.
    let result = unsafe {
        libdeflate_gzip_decompress_ex(
            d.0.as_ptr(),
            file.as_ptr().cast::<c_void>(),
            file.len(),
            out.as_mut_ptr().cast::<c_void>(),
            isize,
            &raw mut used,
            &raw mut produced,
        )
    };
    let whole = result == libdeflate_result_LIBDEFLATE_SUCCESS && used == file.len() && produced == isize;
    if !whole {
        return None;
    }
    // SAFETY: on success libdeflate initialised the first `produced` bytes of `out`, and
    // `produced` is `isize`, within the capacity.
    unsafe { out.set_len(produced) };
    Some(WholeText {
        text: out,
        _grant: grant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{gzip, gzip_members};

    #[test]
    fn one_member_is_inflated_whole() {
        let text = "2025-09-11T17:55:00Z a line\n".repeat(2000);
        let whole = inflate_whole(&gzip(text.as_bytes()), 1 << 20).expect("one member");
        assert_eq!(whole.text(), text.as_bytes());
        assert_eq!(
            inflate_whole(&gzip(b""), 1 << 20).expect("one empty member").text(),
            b""
        );
    }

    #[test]
    fn the_text_budget_is_shared_and_given_back() {
        let text = vec![b'x'; 1 << 20];
        let file = gzip(&text);
        // Room for one file and a half: other tests may hold a few KiB meanwhile.
        let hog = Grant::take(TEXT_BUDGET - (3 << 19)).expect("the budget is free");
        let first = inflate_whole(&file, 4 << 20).expect("room for one");
        assert!(inflate_whole(&file, 4 << 20).is_none(), "no room for a second");
        drop(first);
        assert!(inflate_whole(&file, 4 << 20).is_some(), "room again");
        drop(hog);
    }

    #[test]
    fn anything_but_one_valid_member_is_left_to_the_streaming_decoder() {
        let text = b"first line\nsecond line\n".repeat(100);
        let file = gzip(&text);
        let mut header_crc = file.clone();
        header_crc[3] |= FHCRC;
        let mut crc = file.clone();
        let n = crc.len();
        crc[n - 8] ^= 1;
        let mut body = file.clone();
        body[n / 2] ^= 0x55;
        let mut garbage = file.clone();
        garbage.push(0);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("two members", gzip_members(&text, &[text.len() / 2])),
            ("two identical members", [file.clone(), file.clone()].concat()),
            ("trailing byte", garbage),
            ("truncated", file[..n - 1].to_vec()),
            ("header CRC flag", header_crc),
            ("CRC-32 mismatch", crc),
            ("damaged deflate data", body),
            ("not gzip", text.clone()),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in cases {
            assert!(inflate_whole(&bytes, 1 << 20).is_none(), "{what}");
        }
        // Over the size limit: refused before anything is allocated.
        assert!(inflate_whole(&file, text.len() - 1).is_none());
        assert!(inflate_whole(&file, text.len()).is_some());
    }
}
