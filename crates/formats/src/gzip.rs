//! The one place gzip is decoded, so that every compressed payload gets the same guarantees.
//!
//! Why not `flate2::read::GzDecoder` or `write::GzDecoder`: they stop after the first gzip
//! member, and log files are often several members concatenated (a writer that appends a member
//! per flush or rotation); the rest of the file would be dropped without an error. They are also
//! pull or writer adapters, while decoders are pushed chunks as the network delivers them, and
//! nothing in them caps the decompressed size.
//!
//! [`GzipDecoder`] is a push inflater over zlib's gzip mode (`flate2::Decompress::new_gzip`, the
//! zlib-rs backend): zlib parses each member's header (including the optional name, comment,
//! extra and header CRC fields) and checks each member's CRC-32 and ISIZE trailer. Around it this
//! module adds what zlib leaves to its caller:
//! - every member is decoded: after a member ends, the next bytes must start another member
//!   (`1f 8b`), otherwise the file has trailing garbage;
//! - a file that ends inside a member (or inside the next member's magic number) is truncated,
//!   and a 0-byte file is not gzip at all: both are errors, so a cut transfer never looks like a
//!   short file;
//! - the decompressed size is capped (a gzip bomb is refused instead of filling memory or disk);
//! - the output goes through one reused buffer, so memory stays flat whatever the file size.
//!
//! A caller holding a small file whole may first try [`inflate_whole`] (libdeflate, faster, see
//! `gzip/whole.rs`): it only accepts a single valid member, which this decoder would turn into the
//! same bytes, and leaves everything else, errors included, to this decoder.
//!
//! Errors depend only on the bytes, never on how they were split into chunks: offsets in
//! messages are where a member (or the garbage) starts, the output produced before an error is
//! always handed out before the error is reported, and output past the cap is never handed out.

use std::fmt;

use flate2::{Decompress, FlushDecompress, Status};

mod whole;
pub(crate) use whole::inflate_whole;

/// Size of the reused output buffer: large enough that the per-call overhead of inflate and of
/// the consumer is negligible, small enough to stay in the L2 cache.
pub const OUTPUT_BUFFER: usize = 256 * 1024;

const MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a gzip stream was refused. Offsets are in compressed bytes from the start of the file;
/// members are numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GzipError {
    /// The file has no bytes at all.
    Empty,
    /// The first bytes are not a gzip magic number (an uncompressed file, an HTML error page...).
    NotGzip,
    /// Bytes after the end of member `member` that do not start another member.
    TrailingGarbage { member: u64, offset: u64 },
    /// zlib rejected member `member` (starting at `offset`): a bad header, corrupt deflate data,
    /// or a CRC-32 or ISIZE trailer that does not match the data.
    Corrupt { member: u64, offset: u64, message: String },
    /// The input ended inside member `member` (starting at `offset`).
    Truncated { member: u64, offset: u64 },
    /// More than `limit` decompressed bytes.
    TooLarge { limit: u64 },
}

impl fmt::Display for GzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GzipError::Empty => write!(f, "the file is empty (0 bytes), not gzip"),
            GzipError::NotGzip => write!(f, "not a gzip file: it does not start with the gzip magic number 1f 8b"),
            GzipError::TrailingGarbage { member, offset } => write!(
                f,
                "the bytes after gzip member {member}, at compressed byte {offset}, are not another gzip member"
            ),
            GzipError::Corrupt {
                member,
                offset,
                message,
            } => write!(
                f,
                "gzip member {member} (starting at compressed byte {offset}) is corrupt: {message}"
            ),
            GzipError::Truncated { member, offset } => write!(
                f,
                "the file is truncated: gzip member {member} (starting at compressed byte {offset}) has no end"
            ),
            GzipError::TooLarge { limit } => write!(
                f,
                "more than {limit} bytes after decompression: refused as a likely gzip bomb \
                 (raise max_decompressed_bytes if the file is genuine)"
            ),
        }
    }
}

impl std::error::Error for GzipError {}

/// Where the decoder is in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Expecting the magic number of the next member (or the end of the file). `seen_first`:
    /// its first byte arrived at the end of the previous chunk.
    Magic { seen_first: bool },
    /// Inside a member: zlib has the header and data.
    Member,
    /// An error was returned; it is returned again on every call.
    Failed(GzipError),
}

/// A push inflater for (multi-member) gzip. See the module docs.
///
/// ```
/// use etl_formats::gzip::GzipDecoder;
///
/// # fn gz(text: &[u8]) -> Vec<u8> {
/// #     use std::io::Write;
/// #     let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
/// #     e.write_all(text).unwrap();
/// #     e.finish().unwrap()
/// # }
/// let mut file = gz(b"first member\n");
/// file.extend(gz(b"second member\n"));
/// let mut decoder = GzipDecoder::new(1 << 30);
/// let mut text = Vec::new();
/// for chunk in file.chunks(5) {
///     let mut input = chunk;
///     while let Some(out) = decoder.read(&mut input)? {
///         text.extend_from_slice(out);
///     }
/// }
/// decoder.finish()?;
/// assert_eq!(text, b"first member\nsecond member\n");
/// # Ok::<(), etl_formats::gzip::GzipError>(())
/// ```
pub struct GzipDecoder {
    inflate: Decompress,
    state: State,
    /// Members started so far.
    members: u64,
    /// Compressed offset where the current (or the last) member starts.
    member_start: u64,
    /// Compressed bytes consumed so far.
    consumed: u64,
    /// Decompressed bytes handed out so far.
    produced: u64,
    max_output: u64,
    /// The last inflate call filled the buffer: zlib may hold more output without more input.
    output_pending: bool,
    buf: Vec<u8>,
}

impl fmt::Debug for GzipDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GzipDecoder")
            .field("state", &self.state)
            .field("members", &self.members)
            .field("consumed", &self.consumed)
            .field("produced", &self.produced)
            .field("max_output", &self.max_output)
            .finish_non_exhaustive()
    }
}

impl GzipDecoder {
    /// A decoder that refuses to produce more than `max_output` decompressed bytes in total.
    pub fn new(max_output: u64) -> Self {
        Self {
            inflate: Decompress::new_gzip(15),
            state: State::Magic { seen_first: false },
            members: 0,
            member_start: 0,
            consumed: 0,
            produced: 0,
            max_output,
            output_pending: false,
            // Allocated with the first member: a caller that inflates the file whole never
            // needs it.
            buf: Vec::new(),
        }
    }

    /// Inflates from the front of `input`, advancing it past what was consumed, and returns the
    /// next piece of decompressed output (valid until the next call). `None` means `input` is
    /// used up and everything it decodes to has been returned: call again with the next chunk,
    /// or [`finish`](Self::finish) at the end of the file. After an error every call returns it
    /// again.
    pub fn read(&mut self, input: &mut &[u8]) -> Result<Option<&[u8]>, GzipError> {
        loop {
            match self.state {
                State::Failed(ref e) => return Err(e.clone()),
                State::Magic { seen_first } => {
                    let Some((&b, rest)) = input.split_first() else {
                        return Ok(None);
                    };
                    if b != MAGIC[usize::from(seen_first)] {
                        let err = if self.members == 0 {
                            GzipError::NotGzip
                        } else {
                            GzipError::TrailingGarbage {
                                member: self.members,
                                offset: self.consumed - u64::from(seen_first),
                            }
                        };
                        return Err(self.fail(err));
                    }
                    *input = rest;
                    self.consumed += 1;
                    if !seen_first {
                        self.state = State::Magic { seen_first: true };
                        continue;
                    }
                    self.start_member()?;
                }
                State::Member => {
                    if input.is_empty() && !self.output_pending {
                        return Ok(None);
                    }
                    let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
                    let status = self.inflate.decompress(input, &mut self.buf, FlushDecompress::None);
                    let used = (self.inflate.total_in() - in_before) as usize;
                    let mut out = (self.inflate.total_out() - out_before) as usize;
                    *input = &input[used..];
                    self.consumed += used as u64;
                    self.output_pending = out == self.buf.len();
                    // The cap first: output beyond it is never handed out, whatever follows.
                    let room = self.max_output - self.produced;
                    if out as u64 > room {
                        out = room as usize;
                        self.fail(GzipError::TooLarge { limit: self.max_output });
                    } else {
                        match status {
                            Ok(Status::StreamEnd) => {
                                self.state = State::Magic { seen_first: false };
                                self.output_pending = false;
                            }
                            Ok(Status::Ok | Status::BufError) => {}
                            Err(e) => {
                                let message = describe(e.message());
                                self.fail(GzipError::Corrupt {
                                    member: self.members,
                                    offset: self.member_start,
                                    message,
                                });
                            }
                        }
                    }
                    self.produced += out as u64;
                    if out > 0 {
                        return Ok(Some(&self.buf[..out]));
                    }
                    if self.state == State::Member && used == 0 && !self.output_pending {
                        if input.is_empty() {
                            return Ok(None);
                        }
                        // zlib always progresses with input and output room; never drop input.
                        return Err(self.fail(GzipError::Corrupt {
                            member: self.members,
                            offset: self.member_start,
                            message: "inflate made no progress".into(),
                        }));
                    }
                }
            }
        }
    }

    /// End of the file: fails unless it ended right after a complete member.
    pub fn finish(&mut self) -> Result<(), GzipError> {
        match self.state {
            State::Failed(ref e) => Err(e.clone()),
            State::Magic { seen_first: false } if self.members == 0 => Err(self.fail(GzipError::Empty)),
            State::Magic { seen_first: false } => Ok(()),
            State::Magic { seen_first: true } if self.members == 0 => {
                Err(self.fail(GzipError::Truncated { member: 1, offset: 0 }))
            }
            State::Magic { seen_first: true } => {
                let err = GzipError::Truncated {
                    member: self.members + 1,
                    offset: self.consumed - 1,
                };
                Err(self.fail(err))
            }
            State::Member => {
                let err = GzipError::Truncated {
                    member: self.members,
                    offset: self.member_start,
                };
                Err(self.fail(err))
            }
        }
    }

    /// Members started so far.
    pub fn members(&self) -> u64 {
        self.members
    }

    /// Decompressed bytes handed out so far.
    pub fn total_out(&self) -> u64 {
        self.produced
    }

    /// Both magic bytes have been consumed: hands them to a fresh zlib stream, which parses the
    /// rest of the header itself.
    fn start_member(&mut self) -> Result<(), GzipError> {
        if self.members > 0 {
            self.inflate.reset(true);
        }
        if self.buf.is_empty() {
            self.buf = vec![0; OUTPUT_BUFFER];
        }
        self.members += 1;
        self.member_start = self.consumed - 2;
        self.state = State::Member;
        self.output_pending = false;
        let before = self.inflate.total_in();
        let status = self.inflate.decompress(&MAGIC, &mut self.buf, FlushDecompress::None);
        match status {
            Ok(_) if self.inflate.total_in() - before == 2 => Ok(()),
            Ok(_) => Err(self.fail(GzipError::Corrupt {
                member: self.members,
                offset: self.member_start,
                message: "zlib did not accept the gzip magic number".into(),
            })),
            Err(e) => {
                let message = describe(e.message());
                Err(self.fail(GzipError::Corrupt {
                    member: self.members,
                    offset: self.member_start,
                    message,
                }))
            }
        }
    }

    fn fail(&mut self, err: GzipError) -> GzipError {
        self.state = State::Failed(err.clone());
        err
    }
}

/// zlib's message for a member it refused, in the gzip format's terms. Which deflate error zlib
/// names for damaged data can depend on how the input was chunked (its fast and slow decoding
/// paths report the same damage differently), so those are one message: errors must not depend
/// on the chunks.
fn describe(message: Option<&str>) -> String {
    match message {
        Some("incorrect data check") => "CRC-32 mismatch (incorrect data check)".into(),
        Some("incorrect length check") => "ISIZE mismatch (incorrect length check)".into(),
        Some(
            m @ ("incorrect header check"
            | "unknown compression method"
            | "unknown header flags set"
            | "header crc mismatch"),
        ) => format!("bad gzip header ({m})"),
        _ => "invalid deflate data".into(),
    }
}

#[cfg(test)]
mod tests;
