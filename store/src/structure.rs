//! A structural walk of a DICOM Part 10 file (PS3.5 §7, PS3.10 §7.1) that checks every
//! declared length fits in the bytes that remain, every VR is a real VR and delimiters sit
//! where they belong, and reads the few short top-level values the pilot indexes. Other values
//! are skipped, never read into memory.
//!
//! Why not a full parser: dicom-rs 0.10 allocates what a length field declares before it finds
//! the file too short, and mis-reads UN sequences of undefined length: pydicom's valid 674-byte
//! `UN_sequence.dcm` made it allocate 3.6 GB and spin for 50 s. A clinic PC must not be brought
//! down by one file, so ingest and indexing use this walk; dicom-rs is kept for rendering.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQ_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);
/// Deepest nesting of sequences accepted.
const MAX_DEPTH: usize = 64;

/// VRs whose explicit encoding has a 2-byte reserved field and a 4-byte length.
const LONG_VRS: [&[u8; 2]; 12] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
];
const ALL_VRS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    ExplicitLe,
    ImplicitLe,
    ExplicitBe,
}

/// What the walk is inside of.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// A sequence of items; `end` is its end offset when its length is defined.
    Sequence {
        end: Option<u64>,
        encoding: Encoding,
    },
    /// An item of a sequence.
    Item { end: Option<u64> },
    /// Encapsulated pixel data: items hold raw fragments, not elements.
    Fragments,
}

/// Longest value read for the caller; longer wanted values are skipped.
const MAX_VALUE: u32 = 256;

/// A walked file: its meta values and the wanted top-level values, as text.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// File meta group values (group 0002) of at most 256 bytes, by element number.
    pub meta: HashMap<u16, String>,
    /// The wanted top-level data set values found.
    pub values: HashMap<(u16, u16), String>,
    /// Where the data set starts (after the preamble, `DICM` and the meta group).
    pub dataset_offset: u64,
    /// Elements of undefined length whose VR the file does not say (UN in explicit VR, a
    /// private tag in implicit VR): valid sequences, but dicom-rs mis-reads them, so the
    /// renderer and the re-encoder refuse such files rather than hand them to it.
    pub unknown_vr_sequences: u32,
    /// Each top-level data set element's tag and the offset of its first byte, in file order
    /// (filled by [`layout`] only): where to cut a data set to change one of its values.
    pub top_level: Vec<((u16, u16), u64)>,
    /// The file's length: where the last top-level element ends.
    pub len: u64,
}

/// Walks the file at `path`, collecting the `wanted` top-level values; the error says where
/// and what is wrong.
pub fn scan(path: &Path, wanted: &[(u16, u16)]) -> Result<Scan, String> {
    walk(path, wanted, false)
}

/// [`scan`], also recording where each top-level element starts ([`Scan::top_level`]).
pub fn layout(path: &Path, wanted: &[(u16, u16)]) -> Result<Scan, String> {
    walk(path, wanted, true)
}

fn walk(path: &Path, wanted: &[(u16, u16)], layout: bool) -> Result<Scan, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut walker = Walker {
        r: BufReader::with_capacity(64 * 1024, file),
        pos: 0,
        len,
        wanted,
        layout,
        scan: Scan {
            len,
            ..Scan::default()
        },
    };
    walker.walk()?;
    Ok(walker.scan)
}

struct Walker<'w, R> {
    r: R,
    pos: u64,
    len: u64,
    wanted: &'w [(u16, u16)],
    layout: bool,
    scan: Scan,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches(['\0', ' '])
        .trim()
        .to_owned()
}

impl<R: Read + Seek> Walker<'_, R> {
    fn value(&mut self, length: u32) -> Result<String, String> {
        let mut v = vec![0u8; length as usize];
        self.r.read_exact(&mut v).map_err(|e| e.to_string())?;
        self.pos += u64::from(length);
        Ok(text(&v))
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|_| format!("file ends inside an element header at byte {}", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        // Within the buffer when the element is small: no system call.
        self.r.seek_relative(n as i64).map_err(|e| e.to_string())?;
        self.pos += n;
        Ok(())
    }

    /// Whether the next bytes are an item tag (FFFE,E000) in little endian; reads nothing.
    fn item_follows(&mut self) -> Result<bool, String> {
        let b = self.bytes::<4>()?;
        self.r.seek_relative(-4).map_err(|e| e.to_string())?;
        self.pos -= 4;
        Ok(b == [0xFE, 0xFF, 0x00, 0xE0])
    }

    fn u16(&mut self, enc: Encoding) -> Result<u16, String> {
        let b = self.bytes::<2>()?;
        Ok(if enc == Encoding::ExplicitBe {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&mut self, enc: Encoding) -> Result<u32, String> {
        let b = self.bytes::<4>()?;
        Ok(if enc == Encoding::ExplicitBe {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn walk(&mut self) -> Result<(), String> {
        if self.len < 132 {
            return Err("too short for a DICOM Part 10 file".into());
        }
        self.skip(128)?;
        if &self.bytes::<4>()? != b"DICM" {
            return Err("no DICM prefix after the 128-byte preamble".into());
        }
        // File meta group: always explicit VR little endian (PS3.10 §7.1).
        let mut transfer_syntax = String::new();
        loop {
            if self.pos >= self.len {
                return Err("file ends after the meta group".into());
            }
            let group = u16::from_le_bytes(self.bytes::<2>()?);
            if group != 0x0002 {
                self.r.seek_relative(-2).map_err(|e| e.to_string())?;
                self.pos -= 2;
                self.scan.dataset_offset = self.pos;
                break;
            }
            let element = u16::from_le_bytes(self.bytes::<2>()?);
            let (_, length) = self.vr_and_length((group, element), Encoding::ExplicitLe)?;
            if length == UNDEFINED || u64::from(length) > self.len - self.pos {
                return Err(format!(
                    "meta element (0002,{element:04X}) declares {length} bytes, more than remain"
                ));
            }
            if length <= MAX_VALUE {
                let value = self.value(length)?;
                if element == 0x0010 {
                    transfer_syntax = value.clone();
                }
                self.scan.meta.insert(element, value);
            } else {
                self.skip(u64::from(length))?;
            }
        }
        let encoding = match transfer_syntax.as_str() {
            "1.2.840.10008.1.2" => Encoding::ImplicitLe,
            "1.2.840.10008.1.2.2" => Encoding::ExplicitBe,
            // A deflated data set (PS3.5 §A.5) cannot be walked without inflating it, and
            // dicom-rs, built with its deflate feature, inflates and parses it unchecked: a
            // 2.7 kB file found by fuzzing made it allocate 1.2 GB. Refused, as unwalkable.
            "1.2.840.10008.1.2.1.99" => {
                return Err(
                    "the data set is deflated (transfer syntax 1.2.840.10008.1.2.1.99), which \
                     cannot be checked before it is read; send it uncompressed or in another \
                     transfer syntax"
                        .into(),
                )
            }
            _ => Encoding::ExplicitLe,
        };
        self.data_set(encoding)
    }

    fn vr_and_length(&mut self, tag: (u16, u16), enc: Encoding) -> Result<([u8; 2], u32), String> {
        if enc == Encoding::ImplicitLe {
            return Ok((*b"UN", self.u32(enc)?));
        }
        let vr = self.bytes::<2>()?;
        if !ALL_VRS.contains(&&vr) {
            return Err(format!(
                "element ({:04X},{:04X}) at byte {} has no valid VR ({:02X} {:02X})",
                tag.0,
                tag.1,
                self.pos - 6,
                vr[0],
                vr[1]
            ));
        }
        if LONG_VRS.contains(&&vr) {
            self.skip(2)?;
            Ok((vr, self.u32(enc)?))
        } else {
            Ok((vr, u32::from(self.u16(enc)?)))
        }
    }

    fn data_set(&mut self, top: Encoding) -> Result<(), String> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Close frames whose defined length ends here.
            while let Some(frame) = stack.last() {
                let end = match frame {
                    Frame::Sequence { end, .. } | Frame::Item { end } => *end,
                    Frame::Fragments => None,
                };
                match end {
                    Some(e) if self.pos == e => {
                        stack.pop();
                    }
                    Some(e) if self.pos > e => {
                        return Err(format!(
                            "contents overrun their declared length at byte {}",
                            self.pos
                        ))
                    }
                    _ => break,
                }
            }
            if self.pos >= self.len {
                return if stack.is_empty() {
                    Ok(())
                } else {
                    Err("file ends inside a sequence".into())
                };
            }
            let enc = stack
                .iter()
                .rev()
                .find_map(|f| match f {
                    Frame::Sequence { encoding, .. } => Some(*encoding),
                    _ => None,
                })
                .unwrap_or(top);
            // Delimiter and item tags are little endian unless the data set is big endian.
            let start = self.pos;
            let tag = (self.u16(enc)?, self.u16(enc)?);
            if self.layout && stack.is_empty() {
                self.scan.top_level.push((tag, start));
            }
            let remaining = |w: &Self| w.len - w.pos;
            if tag.0 == 0xFFFE {
                let length = self.u32(enc)?;
                match (tag, stack.last().copied()) {
                    (ITEM, Some(Frame::Fragments)) => {
                        if length == UNDEFINED || u64::from(length) > remaining(self) {
                            return Err(format!("pixel data fragment at byte {} declares {length} bytes, more than remain", self.pos));
                        }
                        self.skip(u64::from(length))?;
                    }
                    (ITEM, Some(Frame::Sequence { .. })) => {
                        let end = if length == UNDEFINED {
                            None
                        } else if u64::from(length) > remaining(self) {
                            return Err(format!(
                                "item at byte {} declares {length} bytes, more than remain",
                                self.pos
                            ));
                        } else {
                            Some(self.pos + u64::from(length))
                        };
                        stack.push(Frame::Item { end });
                    }
                    (ITEM_END, Some(Frame::Item { end: None })) => {
                        stack.pop();
                    }
                    (SEQ_END, Some(Frame::Sequence { end: None, .. }) | Some(Frame::Fragments)) => {
                        stack.pop();
                    }
                    _ => {
                        return Err(format!(
                            "unexpected delimiter ({:04X},{:04X}) at byte {}",
                            tag.0,
                            tag.1,
                            self.pos - 8
                        ))
                    }
                }
                continue;
            }
            if matches!(
                stack.last(),
                Some(Frame::Sequence { .. }) | Some(Frame::Fragments)
            ) {
                return Err(format!(
                    "element ({:04X},{:04X}) at byte {} outside an item",
                    tag.0,
                    tag.1,
                    self.pos - 4
                ));
            }
            let (vr, length) = self.vr_and_length(tag, enc)?;
            if length == UNDEFINED {
                if stack.len() >= MAX_DEPTH {
                    return Err("sequences nested too deeply".into());
                }
                let unknown_vr = if enc == Encoding::ImplicitLe {
                    tag.0 % 2 == 1
                } else {
                    &vr == b"UN"
                };
                if unknown_vr {
                    self.scan.unknown_vr_sequences += 1;
                }
                if tag == PIXEL_DATA && enc != Encoding::ImplicitLe && &vr != b"SQ" {
                    stack.push(Frame::Fragments);
                } else {
                    // SQ, or UN / implicit VR with undefined length: a sequence whose items
                    // are implicit VR little endian when the VR is UN (PS3.5 §6.2.2).
                    let encoding = if &vr == b"UN" {
                        Encoding::ImplicitLe
                    } else {
                        enc
                    };
                    stack.push(Frame::Sequence {
                        end: None,
                        encoding,
                    });
                }
                continue;
            }
            if u64::from(length) > remaining(self) {
                return Err(format!(
                    "element ({:04X},{:04X}) declares {length} bytes but only {} remain; the file is truncated or corrupt",
                    tag.0,
                    tag.1,
                    remaining(self)
                ));
            }
            if stack.is_empty() && length <= MAX_VALUE && self.wanted.contains(&tag) {
                let value = self.value(length)?;
                self.scan.values.insert(tag, value);
            } else if (&vr == b"SQ" && enc != Encoding::ImplicitLe)
                || (enc == Encoding::ImplicitLe
                    && tag != PIXEL_DATA
                    && length >= 8
                    && self.item_follows()?)
            {
                // In implicit VR a sequence of defined length has no VR to tell it by, but
                // dicom-rs knows it from its dictionary and reads into it: so the walk does
                // too, when the value begins as a sequence's items do. Skipped unchecked, a
                // length inside one made dicom-rs allocate 2 GB for a 2.7 kB file (found by
                // fuzzing).
                if stack.len() >= MAX_DEPTH {
                    return Err("sequences nested too deeply".into());
                }
                stack.push(Frame::Sequence {
                    end: Some(self.pos + u64::from(length)),
                    encoding: enc,
                });
            } else {
                self.skip(u64::from(length))?;
            }
        }
    }
}
