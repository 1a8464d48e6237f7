//! Streaming the one entry of a `.zip` archive as it downloads.
//!
//! A zip container decides how many payloads there are, so it belongs to the sources; the
//! decoder sees the entry's bytes as if the file had not been zipped. The archive is read front
//! to back (local header, data, optional data descriptor, central directory, end record), so
//! nothing is buffered beyond one header:
//! - The entry's declared sizes are not trusted to find its end: deflate data ends where the
//!   deflate stream says. They are checked instead: the CRC-32 and both sizes of the local
//!   header (or of the data descriptor), and of the central directory's record of the entry,
//!   must equal what was actually read and inflated. An archive whose headers disagree with its
//!   data, or with each other, is refused: two zip readers would see two different files in it.
//! - The inflated size is capped (a zip bomb stops at the cap with an error; a header that
//!   declares more than the cap is refused before inflating), and so is the number of entries,
//!   counted in the local headers and in the central directory alike, so an archive of a
//!   million entries is refused at the first one past the cap, never scanned whole.
//! - The entry's name never becomes a path; a name that tries to be one (`../x`, `/etc/x`,
//!   `a\b`, NUL) is refused, since no honest log archive carries one.
//! - [`ZipStream::feed`] hands back everything its input inflates to; deflate expands at most
//!   about 1032:1, so a caller that feeds at most [`MAX_FEED`] bytes at a time (and passes the
//!   output on before the next call) holds at most about 4 MiB of a bomb at once.

use bytes::{Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const ZIP64_END_OF_CENTRAL: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const DIGITAL_SIGNATURE: u32 = 0x0505_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
/// A 32-bit size field with this value defers to the zip64 extra field.
const ZIP64_SIZE: u32 = 0xFFFF_FFFF;
/// Output buffer of one inflate call.
const OUT_CHUNK: usize = 64 * 1024;
/// The most compressed bytes worth feeding at once: deflate expands at most about 1032:1, so
/// this bounds what one [`ZipStream::feed`] call hands back to about 4 MiB.
pub const MAX_FEED: usize = 4 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZipError {
    #[error("not a zip archive (it does not start with a local file header)")]
    NotZip,
    #[error("zip entry name `{name}` is not a plain file name ({reason}); refusing the archive")]
    UnsafeName { name: String, reason: &'static str },
    #[error("zip entry `{name}` uses compression method {method}; only stored (0) and deflate (8) are supported")]
    Method { name: String, method: u16 },
    #[error("zip entry `{0}` is stored with a data descriptor: its end cannot be found without trusting sizes")]
    StoredWithDescriptor(String),
    #[error("zip entry `{0}` is encrypted")]
    Encrypted(String),
    #[error("zip entry `{name}`: corrupt deflate data: {message}")]
    Corrupt { name: String, message: String },
    #[error("zip entry `{name}` inflates to more than the cap of {limit} bytes{}", declared.map(|d| format!(" (its header declares {d})")).unwrap_or_default())]
    TooLarge {
        name: String,
        limit: u64,
        declared: Option<u64>,
    },
    #[error("the archive holds more entries than the {0} allowed (a rotated log archive holds one)")]
    TooManyEntries(usize),
    #[error("zip entry `{name}`: CRC-32 mismatch (expected {expected:08x}, got {got:08x})")]
    Crc { name: String, expected: u32, got: u32 },
    #[error(
        "zip entry `{name}`: the {record} gives {field} as {declared}, but {actual}; refusing an archive whose headers disagree with its data"
    )]
    Mismatch {
        name: String,
        /// `local header`, `data descriptor` or `central directory`.
        record: &'static str,
        /// `the compressed size`, `the uncompressed size` or `the name`.
        field: &'static str,
        declared: String,
        actual: String,
    },
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
    /// Reading the central directory's records.
    Central,
    /// The end record was reached: the rest (the archive comment) is ignored.
    Done,
}

/// What was read of the entry: its name, CRC-32 and sizes.
#[derive(Clone, Debug, Default)]
struct Facts {
    name: String,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
}

/// A push parser: feed the archive's bytes in any pieces, get the entry's bytes out.
pub struct ZipStream {
    state: State,
    buf: BytesMut,
    inflate: Decompress,
    name: String,
    flags: u16,
    /// CRC-32 and sizes of the local header, when it carries them (no data descriptor).
    declared: Option<(u32, u32, u32)>,
    crc: crc32fast::Hasher,
    out_total: u64,
    /// Compressed bytes of the entry read so far.
    in_entry: u64,
    entries: usize,
    central_entries: usize,
    /// The entry as read, checked against the central directory.
    read: Facts,
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

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from(u32_at(b, i)) | (u64::from(u32_at(b, i + 4)) << 32)
}

/// A size field against what was read; `None` when it agrees or defers to zip64.
fn size_mismatch(declared: u32, actual: u64) -> Option<(String, String)> {
    (declared != ZIP64_SIZE && u64::from(declared) != actual).then(|| (declared.to_string(), actual.to_string()))
}

impl ZipStream {
    pub fn new(max_entries: usize, max_output: u64) -> Self {
        Self {
            state: State::Header,
            buf: BytesMut::new(),
            inflate: Decompress::new(false),
            name: String::new(),
            flags: 0,
            declared: None,
            crc: crc32fast::Hasher::new(),
            out_total: 0,
            in_entry: 0,
            entries: 0,
            central_entries: 0,
            read: Facts::default(),
            max_entries: max_entries.max(1),
            max_output,
        }
    }

    /// The name of the entry being read (for messages).
    pub fn entry_name(&self) -> &str {
        &self.name
    }

    /// Consumes `input`, appending inflated bytes to `out`. Everything `input` inflates to is
    /// appended, so callers that must bound memory feed at most [`MAX_FEED`] bytes at a time.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Bytes>) -> Result<(), ZipError> {
        if matches!(self.state, State::Done) {
            return Ok(());
        }
        self.buf.extend_from_slice(input);
        loop {
            let progressed = match self.state {
                State::Header => self.header()?,
                State::Deflated => self.deflated(out)?,
                State::Stored { left } => self.stored(left, out)?,
                State::Descriptor => self.descriptor()?,
                State::Central => self.central()?,
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

    /// The end of the archive: it must have ended after the end-of-central-directory record.
    pub fn finish(&mut self) -> Result<(), ZipError> {
        match self.state {
            State::Done => Ok(()),
            State::Header if self.entries == 0 && self.buf.is_empty() => Err(ZipError::Empty),
            State::Header => Err(ZipError::Truncated("inside a header, before the central directory")),
            State::Deflated | State::Stored { .. } => Err(ZipError::Truncated("inside the entry's data")),
            State::Descriptor => Err(ZipError::Truncated("inside a data descriptor")),
            State::Central => Err(ZipError::Truncated("inside the central directory")),
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
            self.state = State::Central;
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
        // Counted before the header is even complete: a flood of entries stops at the first
        // one past the cap.
        if self.entries >= self.max_entries {
            return Err(ZipError::TooManyEntries(self.max_entries));
        }
        if self.buf.len() < 30 {
            return Ok(false);
        }
        let name_len = usize::from(u16_at(&self.buf, 26));
        let extra_len = usize::from(u16_at(&self.buf, 28));
        if self.buf.len() < 30 + name_len + extra_len {
            return Ok(false);
        }
        self.entries += 1;
        let flags = u16_at(&self.buf, 6);
        let method = u16_at(&self.buf, 8);
        let crc = u32_at(&self.buf, 14);
        let compressed = u32_at(&self.buf, 18);
        let uncompressed = u32_at(&self.buf, 22);
        let name = String::from_utf8_lossy(&self.buf[30..30 + name_len]).into_owned();
        if let Some(reason) = crate::unsafe_file_name(&name) {
            return Err(ZipError::UnsafeName {
                name: crate::printable(&name),
                reason,
            });
        }
        if flags & 1 != 0 {
            return Err(ZipError::Encrypted(name));
        }
        let declared = (flags & 8 == 0).then_some((crc, compressed, uncompressed));
        if let Some((_, _, size)) = declared
            && size != ZIP64_SIZE
            && u64::from(size) > self.max_output
        {
            return Err(ZipError::TooLarge {
                name,
                limit: self.max_output,
                declared: Some(u64::from(size)),
            });
        }
        let _ = self.buf.split_to(30 + name_len + extra_len);
        self.flags = flags;
        self.declared = declared;
        self.crc = crc32fast::Hasher::new();
        self.inflate = Decompress::new(false);
        self.in_entry = 0;
        self.state = match method {
            8 => State::Deflated,
            0 if flags & 8 != 0 => return Err(ZipError::StoredWithDescriptor(name)),
            0 => {
                if let Some((declared, actual)) = size_mismatch(uncompressed, u64::from(compressed)) {
                    return Err(ZipError::Mismatch {
                        name,
                        record: "local header",
                        field: "the uncompressed size of a stored entry",
                        declared,
                        actual: format!("its compressed size is {actual}"),
                    });
                }
                State::Stored {
                    left: u64::from(compressed),
                }
            }
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
                declared: None,
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
            self.in_entry += used as u64;
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
        self.in_entry += n as u64;
        self.emit(data, out)?;
        self.state = State::Stored { left: left - n as u64 };
        Ok(true)
    }

    /// The entry's data ended: what was read is checked against the local header, or against
    /// the data descriptor that follows.
    fn end_of_data(&mut self) -> Result<(), ZipError> {
        self.read = Facts {
            name: self.name.clone(),
            crc: std::mem::take(&mut self.crc).finalize(),
            compressed: self.in_entry,
            uncompressed: self.out_total,
        };
        if self.flags & 8 != 0 {
            self.state = State::Descriptor;
            return Ok(());
        }
        let (crc, compressed, uncompressed) = self.declared.unwrap_or_default();
        self.check("local header", crc, compressed.into(), uncompressed.into(), true)?;
        self.state = State::Header;
        Ok(())
    }

    /// Checks the CRC-32 and sizes a record states against what was read. 32-bit sizes of
    /// `0xFFFFFFFF` (`zip32` true) defer to zip64 fields and are not compared.
    fn check(
        &self,
        record: &'static str,
        crc: u32,
        compressed: u64,
        uncompressed: u64,
        zip32: bool,
    ) -> Result<(), ZipError> {
        let read = &self.read;
        if crc != read.crc {
            return Err(ZipError::Crc {
                name: read.name.clone(),
                expected: crc,
                got: read.crc,
            });
        }
        let defers = |v: u64| zip32 && v == u64::from(ZIP64_SIZE);
        for (field, declared, actual) in [
            ("the compressed size", compressed, read.compressed),
            ("the uncompressed size", uncompressed, read.uncompressed),
        ] {
            if declared != actual && !defers(declared) {
                return Err(ZipError::Mismatch {
                    name: read.name.clone(),
                    record,
                    field,
                    declared: declared.to_string(),
                    actual: format!("the data gives {actual}"),
                });
            }
        }
        Ok(())
    }

    fn descriptor(&mut self) -> Result<bool, ZipError> {
        // Optional signature, CRC-32, then 4- or 8-byte sizes.
        if self.buf.len() < 4 {
            return Ok(false);
        }
        let skip = if u32_at(&self.buf, 0) == DESCRIPTOR { 4 } else { 0 };
        if self.buf.len() < skip + 12 {
            return Ok(false);
        }
        let crc = u32_at(&self.buf, skip);
        // Zip64 descriptors carry 8-byte sizes: tell them apart by what follows.
        let next = [LOCAL_HEADER, CENTRAL_HEADER, END_OF_CENTRAL];
        let sizes = if self.buf.len() >= skip + 20 + 4 {
            if next.contains(&u32_at(&self.buf, skip + 12)) {
                8
            } else {
                16
            }
        } else if self.buf.len() >= skip + 12 + 4 {
            if next.contains(&u32_at(&self.buf, skip + 12)) {
                8
            } else {
                return Ok(false);
            }
        } else {
            return Ok(false);
        };
        let (compressed, uncompressed) = if sizes == 8 {
            (
                u64::from(u32_at(&self.buf, skip + 4)),
                u64::from(u32_at(&self.buf, skip + 8)),
            )
        } else {
            (u64_at(&self.buf, skip + 4), u64_at(&self.buf, skip + 12))
        };
        self.check("data descriptor", crc, compressed, uncompressed, false)?;
        let _ = self.buf.split_to(skip + 4 + sizes);
        self.state = State::Header;
        Ok(true)
    }

    /// One record of the central directory, or the end of it. The records are counted against
    /// the cap, and the entry's own record must agree with what was read.
    fn central(&mut self) -> Result<bool, ZipError> {
        if self.buf.len() < 4 {
            return Ok(false);
        }
        let sig = u32_at(&self.buf, 0);
        if [END_OF_CENTRAL, ZIP64_END_OF_CENTRAL, ZIP64_LOCATOR, DIGITAL_SIGNATURE].contains(&sig) {
            self.state = State::Done;
            self.buf.clear();
            return Ok(false);
        }
        if sig != CENTRAL_HEADER {
            return Err(ZipError::Corrupt {
                name: self.name.clone(),
                message: "unexpected bytes in the central directory".into(),
            });
        }
        if self.central_entries >= self.max_entries {
            return Err(ZipError::TooManyEntries(self.max_entries));
        }
        if self.buf.len() < 46 {
            return Ok(false);
        }
        let name_len = usize::from(u16_at(&self.buf, 28));
        let len = 46 + name_len + usize::from(u16_at(&self.buf, 30)) + usize::from(u16_at(&self.buf, 32));
        if self.buf.len() < len {
            return Ok(false);
        }
        self.central_entries += 1;
        let name = String::from_utf8_lossy(&self.buf[46..46 + name_len]).into_owned();
        if name != self.read.name {
            return Err(ZipError::Mismatch {
                name: self.read.name.clone(),
                record: "central directory",
                field: "the name",
                declared: format!("`{}`", crate::printable(&name)),
                actual: format!("the local header gives `{}`", self.read.name),
            });
        }
        let crc = u32_at(&self.buf, 16);
        let compressed = u32_at(&self.buf, 20).into();
        let uncompressed = u32_at(&self.buf, 24).into();
        self.check("central directory", crc, compressed, uncompressed, true)?;
        let _ = self.buf.split_to(len);
        Ok(true)
    }
}

/// Archives built byte by byte for the tests, honest or not.
#[cfg(test)]
pub(crate) mod test_archives {
    use std::io::Write;

    use flate2::Status;

    use super::*;

    /// The fields of one entry as an archive's records state them.
    #[derive(Clone)]
    pub(crate) struct Record {
        pub(crate) name: Vec<u8>,
        pub(crate) flags: u16,
        pub(crate) method: u16,
        pub(crate) crc: u32,
        pub(crate) compressed: u32,
        pub(crate) uncompressed: u32,
    }

    impl Record {
        pub(crate) fn local(&self) -> Vec<u8> {
            let mut out = LOCAL_HEADER.to_le_bytes().to_vec();
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&self.flags.to_le_bytes());
            out.extend_from_slice(&self.method.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&self.crc.to_le_bytes());
            out.extend_from_slice(&self.compressed.to_le_bytes());
            out.extend_from_slice(&self.uncompressed.to_le_bytes());
            out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&self.name);
            out
        }

        pub(crate) fn central(&self, offset: u32) -> Vec<u8> {
            let mut out = CENTRAL_HEADER.to_le_bytes().to_vec();
            out.extend_from_slice(&[20, 0, 20, 0]);
            out.extend_from_slice(&self.flags.to_le_bytes());
            out.extend_from_slice(&self.method.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&self.crc.to_le_bytes());
            out.extend_from_slice(&self.compressed.to_le_bytes());
            out.extend_from_slice(&self.uncompressed.to_le_bytes());
            out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0; 12]);
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&self.name);
            out
        }
    }

    pub(crate) fn end_record(entries: u16, size: u32, offset: u32) -> Vec<u8> {
        let mut out = END_OF_CENTRAL.to_le_bytes().to_vec();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&entries.to_le_bytes());
        out.extend_from_slice(&entries.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    pub(crate) fn deflate(content: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(content).unwrap();
        enc.finish().unwrap()
    }

    /// The true record of `content` deflated (or stored) under `name`.
    pub(crate) fn truthful(name: &str, content: &[u8], data: &[u8], method: u16) -> Record {
        Record {
            name: name.as_bytes().to_vec(),
            flags: 0,
            method,
            crc: crc32fast::hash(content),
            compressed: data.len() as u32,
            uncompressed: content.len() as u32,
        }
    }

    /// An archive of one entry: its local header, `data`, an optional data descriptor, then a
    /// central directory of `central` and the end record, as zip writers lay them out.
    pub(crate) fn layout(local: &Record, data: &[u8], descriptor: Option<&Record>, central: &Record) -> Vec<u8> {
        let mut out = local.local();
        out.extend_from_slice(data);
        if let Some(d) = descriptor {
            out.extend_from_slice(&DESCRIPTOR.to_le_bytes());
            out.extend_from_slice(&d.crc.to_le_bytes());
            out.extend_from_slice(&d.compressed.to_le_bytes());
            out.extend_from_slice(&d.uncompressed.to_le_bytes());
        }
        let cd = central.central(0);
        let at = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(&end_record(1, cd.len() as u32, at));
        out
    }

    /// A one-entry archive, deflated, the way rotating loggers write them: sizes in the local
    /// header, or (`descriptor`) zeros there and the values in a data descriptor.
    pub(crate) fn archive(name: &str, content: &[u8], descriptor: bool) -> Vec<u8> {
        let data = deflate(content);
        let real = truthful(name, content, &data, 8);
        if descriptor {
            let local = Record {
                flags: 8,
                crc: 0,
                compressed: 0,
                uncompressed: 0,
                ..real.clone()
            };
            let central = Record {
                flags: 8,
                ..real.clone()
            };
            layout(&local, &data, Some(&real), &central)
        } else {
            layout(&real, &data, None, &real)
        }
    }

    /// The same archive with the entry stored (method 0) instead of deflated.
    pub(crate) fn stored(name: &str, content: &[u8]) -> Vec<u8> {
        let real = truthful(name, content, content, 0);
        layout(&real, content, None, &real)
    }

    /// Raw deflate data of `unit` repeated `repeats` times, never holding the content: `unit`
    /// deflated once with a full flush (which resets the compressor, so every copy compresses
    /// to the same bytes), that segment repeated, then an empty final block.
    pub(crate) fn deflate_bomb(unit: &[u8], repeats: usize) -> Vec<u8> {
        use flate2::{Compress, Compression, FlushCompress};
        let mut c = Compress::new(Compression::best(), false);
        let mut segment = |input: &[u8], flush: FlushCompress| {
            let start = c.total_in();
            let mut out = Vec::new();
            loop {
                out.reserve(64 * 1024);
                let consumed = (c.total_in() - start) as usize;
                let status = c.compress_vec(&input[consumed..], &mut out, flush).unwrap();
                let all_in = (c.total_in() - start) as usize == input.len();
                if status == Status::StreamEnd
                    || (flush != FlushCompress::Finish && all_in && out.len() < out.capacity())
                {
                    return out;
                }
            }
        };
        let first = segment(unit, FlushCompress::Full);
        assert_eq!(segment(unit, FlushCompress::Full), first);
        let tail = segment(&[], FlushCompress::Finish);
        let mut data = Vec::with_capacity(first.len() * repeats + tail.len());
        for _ in 0..repeats {
            data.extend_from_slice(&first);
        }
        data.extend_from_slice(&tail);
        data
    }

    /// A million empty stored entries, generated one record at a time: only what a reader
    /// consumes is ever built.
    pub(crate) fn million_locals() -> impl Iterator<Item = Vec<u8>> {
        (0..1_000_000u32).map(|i| {
            Record {
                name: format!("f{i:07}").into_bytes(),
                flags: 0,
                method: 0,
                crc: 0,
                compressed: 0,
                uncompressed: 0,
            }
            .local()
        })
    }

    /// A one-entry zip of `unit` repeated `repeats` times, deflated, its sizes deferred to a
    /// data descriptor (zeros in the local header), as a streaming writer makes them.
    pub(crate) fn bomb_with_descriptor(name: &str, unit_len: usize, repeats: usize) -> Vec<u8> {
        let unit = vec![0u8; unit_len];
        let data = deflate_bomb(&unit, repeats);
        let mut crc = crc32fast::Hasher::new();
        for _ in 0..repeats {
            crc.update(&unit);
        }
        let real = Record {
            name: name.as_bytes().to_vec(),
            flags: 8,
            method: 8,
            crc: crc.finalize(),
            compressed: data.len() as u32,
            uncompressed: (unit_len * repeats) as u32,
        };
        let local = Record {
            crc: 0,
            compressed: 0,
            uncompressed: 0,
            ..real.clone()
        };
        layout(&local, &data, Some(&real), &real)
    }

    /// A true entry whose central directory record doubles its uncompressed size.
    pub(crate) fn lying_central_size(name: &str, content: &[u8]) -> Vec<u8> {
        let data = deflate(content);
        let real = truthful(name, content, &data, 8);
        let lie = Record {
            uncompressed: real.uncompressed * 2,
            ..real.clone()
        };
        layout(&real, &data, None, &lie)
    }

    /// A zip of a million empty stored entries (local headers only: a reader must stop long
    /// before it needs the rest).
    pub(crate) fn million_empty_entries() -> Vec<u8> {
        million_locals().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_archives::*;
    use super::*;

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
        for (evil, shown, reason) in [
            ("../../x", "../../x", "a path separator"),
            ("/etc/passwd", "/etc/passwd", "a path separator"),
            ("a\\b", "a\\b", "a path separator"),
            ("..", "..", "a `.` or `..` path segment"),
            ("x\0.log", "x\\u{0}.log", "a control character"),
            ("%2e%2e", "%2e%2e", "a percent-encoded dot, separator or NUL"),
        ] {
            let zip = archive(evil, &text, false);
            let err = unzip(&zip, 100, u64::MAX).unwrap_err();
            assert_eq!(
                err,
                ZipError::UnsafeName {
                    name: shown.into(),
                    reason
                }
            );
            assert!(
                err.to_string().contains(&format!("`{shown}` is not a plain file name")),
                "{err}"
            );
        }
        let zip = archive("default.log.1", &text, true);
        assert_eq!(
            unzip(&zip, 4096, 1000),
            Err(ZipError::TooLarge {
                name: "default.log.1".into(),
                limit: 1000,
                declared: None,
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
        let zip = archive("default.log.1", &text, false);
        let first_entry = zip.len() - 22 - (46 + "default.log.1".len());
        let two: Vec<u8> = [&zip[..first_entry], &zip[..]].concat();
        assert_eq!(unzip(&two, 4096, u64::MAX), Err(ZipError::TooManyEntries(1)));
        // An archive that ends after the entry but before its central directory is cut short.
        assert_eq!(
            unzip(&zip[..first_entry], 4096, u64::MAX),
            Err(ZipError::Truncated("inside a header, before the central directory"))
        );
        assert_eq!(
            unzip(&zip[..zip.len() - 22], 4096, u64::MAX),
            Err(ZipError::Truncated("inside the central directory"))
        );
    }

    /// Feeds `zip` in [`MAX_FEED`] slices as the WebDAV source does; returns the largest output
    /// one call handed back, the total, and how it ended.
    fn feed_slices(zip: &[u8], cap: u64) -> (usize, u64, Result<(), ZipError>) {
        let mut z = ZipStream::new(1, cap);
        let (mut largest, mut total) = (0, 0u64);
        for slice in zip.chunks(MAX_FEED) {
            let mut out = Vec::new();
            let r = z.feed(slice, &mut out);
            let n: usize = out.iter().map(Bytes::len).sum();
            largest = largest.max(n);
            total += n as u64;
            if let Err(e) = r {
                return (largest, total, Err(e));
            }
        }
        (largest, total, z.finish())
    }

    #[test]
    fn a_one_gib_zip_bomb_stops_at_the_cap_a_few_mib_at_a_time() {
        let unit = vec![0u8; 1 << 20];
        let data = deflate_bomb(&unit, 1024);
        assert!(data.len() < 2 << 20, "1 GiB in {} bytes", data.len());
        let mut crc = crc32fast::Hasher::new();
        for _ in 0..1024 {
            crc.update(&unit);
        }
        let real = Record {
            name: b"default.log.1".to_vec(),
            flags: 0,
            method: 8,
            crc: crc.finalize(),
            compressed: data.len() as u32,
            uncompressed: 1 << 30,
        };
        // Honest sizes: refused from the header, before anything is inflated.
        let zip = layout(&real, &data, None, &real);
        let cap = 64 << 20;
        assert_eq!(
            feed_slices(&zip, cap),
            (
                0,
                0,
                Err(ZipError::TooLarge {
                    name: "default.log.1".into(),
                    limit: cap,
                    declared: Some(1 << 30)
                })
            )
        );
        // Sizes deferred to a data descriptor: inflated as it streams, stopped at the cap, and
        // never more than about 4 MiB handed back by one call.
        let local = Record {
            flags: 8,
            crc: 0,
            compressed: 0,
            uncompressed: 0,
            ..real.clone()
        };
        let zip = layout(
            &local,
            &data,
            Some(&real),
            &Record {
                flags: 8,
                ..real.clone()
            },
        );
        let (largest, total, end) = feed_slices(&zip, cap);
        assert!(largest <= (4 << 20) + OUT_CHUNK, "{largest} bytes from one call");
        assert!(total <= cap + (4 << 20), "{total}");
        assert_eq!(
            end,
            Err(ZipError::TooLarge {
                name: "default.log.1".into(),
                limit: cap,
                declared: None
            })
        );
        // Without a cap it is a genuine, valid 1 GiB archive.
        let (_, total, end) = feed_slices(&zip, u64::MAX);
        assert_eq!((total, end), (1 << 30, Ok(())));
    }

    #[test]
    fn headers_that_disagree_with_the_data_or_each_other_are_refused() {
        let text = content();
        let data = deflate(&text);
        let real = truthful("default.log.1", &text, &data, 8);
        let n = text.len() as u64;
        let c = data.len() as u64;
        let mismatch = |record, field, declared: u64, actual: u64| ZipError::Mismatch {
            name: "default.log.1".into(),
            record,
            field,
            declared: declared.to_string(),
            actual: format!("the data gives {actual}"),
        };
        let lie = |f: &dyn Fn(&mut Record)| {
            let mut r = real.clone();
            f(&mut r);
            r
        };
        let cases: Vec<(Vec<u8>, ZipError)> = vec![
            // The local header lies about a size: the deflate stream's own end is believed,
            // and the lie is refused once the data is read.
            (
                layout(&lie(&|r| r.compressed += 1), &data, None, &real),
                mismatch("local header", "the compressed size", c + 1, c),
            ),
            (
                layout(&lie(&|r| r.uncompressed = 10), &data, None, &real),
                mismatch("local header", "the uncompressed size", 10, n),
            ),
            // The central directory disagrees with the entry that was read.
            (
                layout(&real, &data, None, &lie(&|r| r.uncompressed *= 2)),
                mismatch("central directory", "the uncompressed size", 2 * n, n),
            ),
            (
                layout(&real, &data, None, &lie(&|r| r.compressed -= 1)),
                mismatch("central directory", "the compressed size", c - 1, c),
            ),
            (
                layout(&real, &data, None, &lie(&|r| r.crc ^= 1)),
                ZipError::Crc {
                    name: "default.log.1".into(),
                    expected: real.crc ^ 1,
                    got: real.crc,
                },
            ),
            (
                layout(&real, &data, None, &lie(&|r| r.name = b"other.log".to_vec())),
                ZipError::Mismatch {
                    name: "default.log.1".into(),
                    record: "central directory",
                    field: "the name",
                    declared: "`other.log`".into(),
                    actual: "the local header gives `default.log.1`".into(),
                },
            ),
            // A data descriptor that lies.
            (
                {
                    let local = lie(&|r| {
                        r.flags = 8;
                        r.crc = 0;
                        r.compressed = 0;
                        r.uncompressed = 0;
                    });
                    layout(&local, &data, Some(&lie(&|r| r.uncompressed += 7)), &real)
                },
                mismatch("data descriptor", "the uncompressed size", n + 7, n),
            ),
            // A stored entry whose sizes disagree with each other.
            (
                layout(
                    &Record {
                        uncompressed: 99,
                        ..truthful("default.log.1", &text, &text, 0)
                    },
                    &text,
                    None,
                    &real,
                ),
                ZipError::Mismatch {
                    name: "default.log.1".into(),
                    record: "local header",
                    field: "the uncompressed size of a stored entry",
                    declared: "99".into(),
                    actual: format!("its compressed size is {n}"),
                },
            ),
        ];
        for (zip, want) in cases {
            for piece in [1, 4096] {
                assert_eq!(unzip(&zip, piece, u64::MAX).unwrap_err(), want, "piece {piece}");
            }
            assert!(want.to_string().contains("`default.log.1`"), "{want}");
        }
        // A stored entry whose size is a lie with a matching CRC: only the declared bytes are
        // handed on, and the real rest of the data is refused as garbage.
        let short = Record {
            crc: crc32fast::hash(&text[..10]),
            compressed: 10,
            uncompressed: 10,
            ..truthful("default.log.1", &text, &text, 0)
        };
        let zip = layout(&short, &text, None, &short);
        let mut z = ZipStream::new(1, u64::MAX);
        let mut out = Vec::new();
        let err = z.feed(&zip, &mut out).unwrap_err();
        assert_eq!(out.concat(), &text[..10]);
        assert!(
            matches!(err, ZipError::Corrupt { ref message, .. } if message == "unexpected bytes after the entry"),
            "{err}"
        );
        // Sizes deferred to zip64 fields (0xFFFFFFFF) are not compared.
        let zip64 = lie(&|r| {
            r.compressed = ZIP64_SIZE;
            r.uncompressed = ZIP64_SIZE;
        });
        assert_eq!(
            unzip(&layout(&zip64, &data, None, &zip64), 4096, u64::MAX).unwrap(),
            text
        );
    }

    #[test]
    fn a_million_entries_are_refused_at_the_first_past_the_cap() {
        // In the local headers.
        let mut z = ZipStream::new(1, u64::MAX);
        let mut fed = 0;
        let err = million_locals()
            .find_map(|record| {
                fed += 1;
                z.feed(&record, &mut Vec::new()).err()
            })
            .unwrap();
        assert_eq!((err, fed), (ZipError::TooManyEntries(1), 2));
        assert_eq!(
            ZipError::TooManyEntries(1).to_string(),
            "the archive holds more entries than the 1 allowed (a rotated log archive holds one)"
        );
        // In the central directory only: one real entry, then a million records.
        let text = content();
        let zip = archive("default.log.1", &text, false);
        let cd_at = zip.len() - 22 - (46 + "default.log.1".len());
        let one = truthful("default.log.1", &text, &deflate(&text), 8);
        let mut z = ZipStream::new(1, u64::MAX);
        let mut out = Vec::new();
        z.feed(&zip[..cd_at], &mut out).unwrap();
        assert_eq!(out.concat(), text);
        let mut fed = 0;
        let records = std::iter::once(one.central(0)).chain((0..1_000_000).map(|i| {
            Record {
                name: format!("f{i:07}").into_bytes(),
                ..one.clone()
            }
            .central(0)
        }));
        let err = records
            .into_iter()
            .find_map(|record| {
                fed += 1;
                z.feed(&record, &mut Vec::new()).err()
            })
            .unwrap();
        assert_eq!((err, fed), (ZipError::TooManyEntries(1), 2));
        // Even with a cap that lets them through, records stream through a buffer of one
        // record: nothing accumulates (a tenth of the million keeps the test quick).
        let mut z = ZipStream::new(2_000_000, u64::MAX);
        let mut largest = 0;
        for record in million_locals().take(100_000) {
            z.feed(&record, &mut Vec::new()).unwrap();
            largest = largest.max(z.buf.len());
        }
        assert_eq!(z.entries, 100_000);
        assert!(largest <= 30 + 8, "{largest} bytes buffered");
    }
}
