//! Streaming the one entry of a `.zip` archive as it downloads.
//!
//! A zip container decides how many payloads there are, so it belongs to the sources; the
//! decoder sees the entry's bytes as if the file had not been zipped. The archive is read front
//! to back (local header, deflated data, optional data descriptor) without the central directory
//! at the end, so nothing is buffered:
//! - The entry's declared sizes are not trusted: deflate data ends where the deflate stream says,
//!   and the CRC-32 is checked against what was inflated.
//! - The inflated size is capped (a zip bomb stops at the cap with an error), and so is the
//!   number of entries.
//! - The entry's name never becomes a path; a name that tries to be one (`../x`, `/etc/x`,
//!   `a\b`) is refused, since no honest log archive carries one.

use bytes::{Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
/// Output buffer of one inflate call.
const OUT_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZipError {
    #[error("not a zip archive (it does not start with a local file header)")]
    NotZip,
    #[error("zip entry name `{0}` is not a plain file name (path separators or `..`); refusing the archive")]
    UnsafeName(String),
    #[error("zip entry `{name}` uses compression method {method}; only stored (0) and deflate (8) are supported")]
    Method { name: String, method: u16 },
    #[error("zip entry `{0}` is stored with a data descriptor: its end cannot be found without trusting sizes")]
    StoredWithDescriptor(String),
    #[error("zip entry `{0}` is encrypted")]
    Encrypted(String),
    #[error("zip entry `{name}`: corrupt deflate data: {message}")]
    Corrupt { name: String, message: String },
    #[error("zip entry `{name}` inflates to more than the cap of {limit} bytes")]
    TooLarge { name: String, limit: u64 },
    #[error("the archive holds more than {0} entries")]
    TooManyEntries(usize),
    #[error("zip entry `{name}`: CRC-32 mismatch (expected {expected:08x}, got {got:08x})")]
    Crc { name: String, expected: u32, got: u32 },
    #[error("the zip archive is truncated ({0})")]
    Truncated(&'static str),
    #[error("the zip archive holds no entry")]
    Empty,
}

enum State {
    /// Reading a local header (or what follows the last entry).
    Header,
    Deflated,
    Stored {
        left: u64,
    },
    /// Reading the data descriptor after an entry.
    Descriptor,
    /// The central directory was reached: the rest is ignored.
    Done,
}

/// A push parser: feed the archive's bytes in any pieces, get the entry's bytes out.
pub struct ZipStream {
    state: State,
    buf: BytesMut,
    inflate: Decompress,
    name: String,
    flags: u16,
    header_crc: u32,
    crc: crc32fast::Hasher,
    out_total: u64,
    entries: usize,
    max_entries: usize,
    max_output: u64,
}

impl std::fmt::Debug for ZipStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipStream")
            .field("name", &self.name)
            .field("entries", &self.entries)
            .field("out_total", &self.out_total)
            .finish()
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Whether a zip entry name is a plain file name.
pub fn safe_entry_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']) && !name.contains(':')
}

impl ZipStream {
    pub fn new(max_entries: usize, max_output: u64) -> Self {
        Self {
            state: State::Header,
            buf: BytesMut::new(),
            inflate: Decompress::new(false),
            name: String::new(),
            flags: 0,
            header_crc: 0,
            crc: crc32fast::Hasher::new(),
            out_total: 0,
            entries: 0,
            max_entries: max_entries.max(1),
            max_output,
        }
    }

    /// The name of the entry being read (for messages).
    pub fn entry_name(&self) -> &str {
        &self.name
    }

    /// Consumes `input`, appending inflated bytes to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Bytes>) -> Result<(), ZipError> {
        self.buf.extend_from_slice(input);
        loop {
            let progressed = match self.state {
                State::Header => self.header()?,
                State::Deflated => self.deflated(out)?,
                State::Stored { left } => self.stored(left, out)?,
                State::Descriptor => self.descriptor()?,
                State::Done => {
                    self.buf.clear();
                    false
                }
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    /// The end of the archive: it must have ended after a complete entry.
    pub fn finish(&mut self) -> Result<(), ZipError> {
        match self.state {
            State::Done => Ok(()),
            State::Header if self.entries > 0 && self.buf.is_empty() => Ok(()),
            State::Header if self.entries == 0 && self.buf.is_empty() => Err(ZipError::Empty),
            State::Header => Err(ZipError::Truncated("inside a header")),
            State::Deflated | State::Stored { .. } => Err(ZipError::Truncated("inside the entry's data")),
            State::Descriptor => Err(ZipError::Truncated("inside a data descriptor")),
        }
    }

    fn header(&mut self) -> Result<bool, ZipError> {
        if self.buf.len() < 4 {
            return Ok(false);
        }
        let sig = u32_at(&self.buf, 0);
        if sig == CENTRAL_HEADER || sig == END_OF_CENTRAL {
            if self.entries == 0 {
                return Err(ZipError::Empty);
            }
            self.state = State::Done;
            return Ok(true);
        }
        if sig != LOCAL_HEADER {
            return Err(if self.entries == 0 {
                ZipError::NotZip
            } else {
                ZipError::Corrupt {
                    name: self.name.clone(),
                    message: "unexpected bytes after the entry".into(),
                }
            });
        }
        if self.buf.len() < 30 {
            return Ok(false);
        }
        let name_len = usize::from(u16_at(&self.buf, 26));
        let extra_len = usize::from(u16_at(&self.buf, 28));
        if self.buf.len() < 30 + name_len + extra_len {
            return Ok(false);
        }
        if self.entries >= self.max_entries {
            return Err(ZipError::TooManyEntries(self.max_entries));
        }
        self.entries += 1;
        let flags = u16_at(&self.buf, 6);
        let method = u16_at(&self.buf, 8);
        let crc = u32_at(&self.buf, 14);
        let compressed = u32_at(&self.buf, 18);
        let name = String::from_utf8_lossy(&self.buf[30..30 + name_len]).into_owned();
        if !safe_entry_name(&name) {
            return Err(ZipError::UnsafeName(name));
        }
        if flags & 1 != 0 {
            return Err(ZipError::Encrypted(name));
        }
        let _ = self.buf.split_to(30 + name_len + extra_len);
        self.flags = flags;
        self.header_crc = crc;
        self.crc = crc32fast::Hasher::new();
        self.inflate = Decompress::new(false);
        self.state = match method {
            8 => State::Deflated,
            0 if flags & 8 != 0 => return Err(ZipError::StoredWithDescriptor(name)),
            0 => State::Stored {
                left: u64::from(compressed),
            },
            _ => return Err(ZipError::Method { name, method }),
        };
        self.name = name;
        Ok(true)
    }

    fn emit(&mut self, bytes: Bytes, out: &mut Vec<Bytes>) -> Result<(), ZipError> {
        self.out_total += bytes.len() as u64;
        if self.out_total > self.max_output {
            return Err(ZipError::TooLarge {
                name: self.name.clone(),
                limit: self.max_output,
            });
        }
        self.crc.update(&bytes);
        out.push(bytes);
        Ok(())
    }

    fn deflated(&mut self, out: &mut Vec<Bytes>) -> Result<bool, ZipError> {
        if self.buf.is_empty() {
            return Ok(false);
        }
        loop {
            // Inflated straight into the buffer handed on: no copy on the way to the decoder.
            let mut piece = Vec::with_capacity(OUT_CHUNK);
            let before_in = self.inflate.total_in();
            let status = self
                .inflate
                .decompress_vec(&self.buf, &mut piece, FlushDecompress::None)
                .map_err(|e| ZipError::Corrupt {
                    name: self.name.clone(),
                    message: e.to_string(),
                })?;
            let used = (self.inflate.total_in() - before_in) as usize;
            let made = piece.len();
            let _ = self.buf.split_to(used);
            if made > 0 {
                self.emit(Bytes::from(piece), out)?;
            }
            match status {
                Status::StreamEnd => {
                    self.end_of_data()?;
                    return Ok(true);
                }
                _ if used == 0 && made == 0 => return Ok(false),
                _ => {}
            }
        }
    }

    fn stored(&mut self, left: u64, out: &mut Vec<Bytes>) -> Result<bool, ZipError> {
        if left == 0 {
            self.end_of_data()?;
            return Ok(true);
        }
        if self.buf.is_empty() {
            return Ok(false);
        }
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.buf.len());
        let data = self.buf.split_to(n).freeze();
        self.emit(data, out)?;
        self.state = State::Stored { left: left - n as u64 };
        Ok(true)
    }

    fn end_of_data(&mut self) -> Result<(), ZipError> {
        if self.flags & 8 != 0 {
            self.state = State::Descriptor;
            return Ok(());
        }
        self.check_crc(self.header_crc)?;
        self.state = State::Header;
        Ok(())
    }

    fn descriptor(&mut self) -> Result<bool, ZipError> {
        // Optional signature, CRC-32, then 4- or 8-byte sizes (read only for their length).
        if self.buf.len() < 4 {
            return Ok(false);
        }
        let skip = if u32_at(&self.buf, 0) == DESCRIPTOR { 4 } else { 0 };
        if self.buf.len() < skip + 12 {
            return Ok(false);
        }
        let crc = u32_at(&self.buf, skip);
        // Zip64 descriptors carry 8-byte sizes: tell them apart by what follows.
        let sizes = if self.buf.len() >= skip + 20 + 4 {
            let after32 = u32_at(&self.buf, skip + 12);
            if [LOCAL_HEADER, CENTRAL_HEADER, END_OF_CENTRAL].contains(&after32) {
                8
            } else {
                16
            }
        } else if self.buf.len() >= skip + 12 + 4 {
            let after32 = u32_at(&self.buf, skip + 12);
            if [LOCAL_HEADER, CENTRAL_HEADER, END_OF_CENTRAL].contains(&after32) {
                8
            } else {
                return Ok(false);
            }
        } else {
            return Ok(false);
        };
        let _ = self.buf.split_to(skip + 4 + sizes);
        self.check_crc(crc)?;
        self.state = State::Header;
        Ok(true)
    }

    fn check_crc(&mut self, expected: u32) -> Result<(), ZipError> {
        let got = std::mem::take(&mut self.crc).finalize();
        if got != expected {
            return Err(ZipError::Crc {
                name: self.name.clone(),
                expected,
                got,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A one-entry archive written by hand (local header, deflate data, optional descriptor,
    /// central directory), the way rotating loggers write them.
    fn archive(name: &str, content: &[u8], descriptor: bool) -> Vec<u8> {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(content).unwrap();
        let data = enc.finish().unwrap();
        let crc = crc32fast::hash(content);
        let mut out = Vec::new();
        out.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&(if descriptor { 8u16 } else { 0 }).to_le_bytes());
        out.extend_from_slice(&8u16.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let (c, cs, us) = if descriptor {
            (0, 0, 0)
        } else {
            (crc, data.len() as u32, content.len() as u32)
        };
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&cs.to_le_bytes());
        out.extend_from_slice(&us.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&data);
        if descriptor {
            out.extend_from_slice(&DESCRIPTOR.to_le_bytes());
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(content.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
        out.extend_from_slice(&[0u8; 42]);
        out
    }

    /// The same archive with the entry stored (method 0) instead of deflated.
    fn stored(name: &str, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc32fast::hash(content).to_le_bytes());
        out.extend_from_slice(&(content.len() as u32).to_le_bytes());
        out.extend_from_slice(&(content.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(content);
        out.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
        out.extend_from_slice(&[0u8; 42]);
        out
    }

    fn unzip(bytes: &[u8], piece: usize, cap: u64) -> Result<Vec<u8>, ZipError> {
        let mut z = ZipStream::new(1, cap);
        let mut out = Vec::new();
        for p in bytes.chunks(piece.max(1)) {
            z.feed(p, &mut out)?;
        }
        z.finish()?;
        Ok(out.concat())
    }

    fn content() -> Vec<u8> {
        (0..20_000)
            .map(|i| format!("\"2025-11-18T00:00:{:02}.000Z\",\"[INFO ]\",\"k{i}\"\n", i % 60))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn streams_the_entry_in_any_pieces_with_or_without_a_descriptor() {
        let text = content();
        for descriptor in [false, true] {
            let zip = archive("default.log.1731900000000", &text, descriptor);
            for piece in [1, 7, 4096, usize::MAX] {
                assert_eq!(unzip(&zip, piece, u64::MAX).unwrap(), text, "piece {piece}");
            }
        }
        let zip = stored("default.log.1", &text);
        for piece in [1, 4096] {
            assert_eq!(unzip(&zip, piece, u64::MAX).unwrap(), text, "stored, piece {piece}");
        }
    }

    #[test]
    fn refuses_unsafe_names_bombs_truncation_and_corruption() {
        let text = content();
        let evil = archive("../../x", &text, false);
        assert_eq!(unzip(&evil, 100, u64::MAX), Err(ZipError::UnsafeName("../../x".into())));
        assert!(!safe_entry_name("/etc/passwd") && !safe_entry_name("a\\b") && !safe_entry_name(".."));
        let zip = archive("default.log.1", &text, true);
        assert_eq!(
            unzip(&zip, 4096, 1000),
            Err(ZipError::TooLarge {
                name: "default.log.1".into(),
                limit: 1000
            })
        );
        assert!(matches!(
            unzip(&zip[..zip.len() / 2], 4096, u64::MAX),
            Err(ZipError::Truncated(_))
        ));
        let mut bad_crc = archive("default.log.1", &text, false);
        bad_crc[14] ^= 0xff;
        assert!(matches!(unzip(&bad_crc, 4096, u64::MAX), Err(ZipError::Crc { .. })));
        assert_eq!(unzip(b"plain text, not zip", 4, u64::MAX), Err(ZipError::NotZip));
        let two: Vec<u8> = [&zip[..zip.len() - 46], &zip[..]].concat();
        assert_eq!(unzip(&two, 4096, u64::MAX), Err(ZipError::TooManyEntries(1)));
    }
}
