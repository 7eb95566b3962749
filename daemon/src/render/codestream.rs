//! What a compressed frame's own header declares, read before dicom-rs decodes it: the JPEG
//! frame header (SOF, ITU-T T.81 §B.2.2) and the JPEG 2000 image and tile size (SIZ, ITU-T
//! T.800 §A.5.1, bare or in a JP2 file's `jp2c` box, §I.5.4). The decoders allocate what these
//! say, not what the DICOM header says: a 3.5 kB JPEG 2000 file whose SIZ declared 7,012,864 ×
//! 512 made the viewer allocate 14 GB (found by fuzzing).

/// What the header of the frame starting at some byte declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Declared {
    /// Not the start of a JPEG or JPEG 2000 frame, or a frame without a frame header (the
    /// decoder refuses it before allocating).
    Nothing,
    /// Width × height × components, and the number of tiles (1 for JPEG).
    Image { samples: u64, tiles: u64 },
    /// A frame header that cannot be found within bounds: not checked, so not decoded.
    Unreadable,
}

/// The fragments of encapsulated pixel data as one run of bytes, as a decoder sees a frame
/// split over several fragments; nothing is copied.
pub(super) struct Joined<'a> {
    fragments: &'a [Vec<u8>],
    /// Where each fragment starts in the run.
    starts: Vec<usize>,
}

impl<'a> Joined<'a> {
    pub(super) fn new(fragments: &'a [Vec<u8>]) -> Self {
        let mut starts = Vec::with_capacity(fragments.len());
        let mut at = 0usize;
        for f in fragments {
            starts.push(at);
            at = at.saturating_add(f.len());
        }
        Self { fragments, starts }
    }

    /// Where each fragment starts: where a frame may start.
    pub(super) fn fragment_starts(&self) -> &[usize] {
        &self.starts
    }

    fn byte(&self, at: usize) -> Option<u8> {
        let i = self.starts.partition_point(|&s| s <= at).checked_sub(1)?;
        self.fragments
            .get(i)?
            .get(at - self.starts.get(i)?)
            .copied()
    }

    /// `n` bytes at `at` as a big-endian number.
    fn be(&self, at: usize, n: usize) -> Option<u64> {
        (0..n).try_fold(0u64, |v, k| {
            Some(v << 8 | u64::from(self.byte(at.checked_add(k)?)?))
        })
    }

    /// What the frame starting at `at` declares.
    pub(super) fn declared(&self, at: usize) -> Declared {
        let result = match self.be(at, 4) {
            Some(0xFF4F_FF51) => self.siz(at + 4),
            Some(0x0000_000C) if self.be(at + 4, 4) == Some(JP2_SIGNATURE) => self.jp2(at),
            Some(soi) if soi >> 16 == 0xFFD8 => self.sof(at + 2),
            _ => Some(Declared::Nothing),
        };
        // A header cut short by the end of the data.
        result.unwrap_or(Declared::Unreadable)
    }

    /// The JPEG frame header after SOI at `at`.
    fn sof(&self, mut at: usize) -> Option<Declared> {
        for _ in 0..MAX_SEGMENTS {
            if self.byte(at)? != 0xFF {
                return Some(Declared::Nothing); // not a marker where one must be
            }
            match self.byte(at + 1)? {
                0xFF => at += 1, // fill byte
                0xD0..=0xD7 | 0x01 => at += 2,
                0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                    let (lines, columns) = (self.be(at + 5, 2)?, self.be(at + 7, 2)?);
                    let components = self.be(at + 9, 1)?;
                    return Some(Declared::Image {
                        samples: lines * columns * components,
                        tiles: 1,
                    });
                }
                0xDA | 0xD9 => return Some(Declared::Nothing),
                _ => at += 2 + usize::try_from(self.be(at + 2, 2)?).ok()?,
            }
        }
        Some(Declared::Unreadable)
    }

    /// The JPEG 2000 SIZ marker segment's parameters starting at `at` (after SOC and SIZ).
    fn siz(&self, at: usize) -> Option<Declared> {
        let u32_at = |offset: usize| self.be(at + offset, 4);
        let (width, height) = (u32_at(4)?, u32_at(8)?);
        let (x0, y0) = (u32_at(12)?, u32_at(16)?);
        let (tile_width, tile_height) = (u32_at(20)?, u32_at(24)?);
        let (tile_x0, tile_y0) = (u32_at(28)?, u32_at(32)?);
        let components = self.be(at + 36, 2)?;
        let samples = width
            .saturating_sub(x0)
            .saturating_mul(height.saturating_sub(y0))
            .saturating_mul(components);
        let tiles = if tile_width == 0 || tile_height == 0 {
            u64::MAX
        } else {
            width
                .saturating_sub(tile_x0)
                .div_ceil(tile_width)
                .saturating_mul(height.saturating_sub(tile_y0).div_ceil(tile_height))
        };
        Some(Declared::Image { samples, tiles })
    }

    /// The codestream of a JP2 file starting at `at`: its `jp2c` box.
    fn jp2(&self, mut at: usize) -> Option<Declared> {
        for _ in 0..MAX_SEGMENTS {
            let (mut length, kind) = (self.be(at, 4)?, self.be(at + 4, 4)?);
            let mut header = 8;
            if length == 1 {
                length = self.be(at + 8, 8)?;
                header = 16;
            }
            if kind == JP2_CODESTREAM {
                return Some(match self.be(at + header, 4)? {
                    0xFF4F_FF51 => self.siz(at + header + 4)?,
                    _ => Declared::Unreadable,
                });
            }
            if length < header as u64 {
                return Some(Declared::Unreadable);
            }
            at = at.checked_add(usize::try_from(length).ok()?)?;
        }
        Some(Declared::Unreadable)
    }
}

/// Marker segments (JPEG) or boxes (JP2) read at most while looking for the frame header; real
/// files have a handful before it.
const MAX_SEGMENTS: usize = 256;
/// `jP  ` and `jp2c` (ITU-T T.800 §I.5).
const JP2_SIGNATURE: u64 = 0x6A50_2020;
const JP2_CODESTREAM: u64 = 0x6A70_3263;

#[cfg(test)]
mod tests {
    use super::*;

    fn siz(width: u32, height: u32, tile: u32, components: u16) -> Vec<u8> {
        let mut out = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [width, height, 0, 0, tile, tile, 0, 0] {
            out.extend(v.to_be_bytes());
        }
        out.extend(components.to_be_bytes());
        out.extend([7, 1, 1]);
        out
    }

    #[test]
    fn a_jpeg_2000_header_split_over_fragments_is_read_whole() {
        let whole = siz(7_012_864, 512, 512, 1);
        let fragments = vec![whole[..5].to_vec(), Vec::new(), whole[5..].to_vec()];
        let run = Joined::new(&fragments);
        assert_eq!(
            run.declared(0),
            Declared::Image {
                samples: 7_012_864 * 512,
                tiles: 13_697
            }
        );
        // A header the data ends inside is not waved through.
        let cut = vec![whole[..20].to_vec()];
        assert_eq!(Joined::new(&cut).declared(0), Declared::Unreadable);
    }

    #[test]
    fn a_jp2_file_is_read_to_its_codestream() {
        let mut jp2 = vec![
            0, 0, 0, 0x0C, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A,
        ];
        jp2.extend([0, 0, 0, 8, b'j', b'p', b'2', b'h']);
        let codestream = siz(64, 64, 1, 3);
        jp2.extend(((codestream.len() + 8) as u32).to_be_bytes());
        jp2.extend(b"jp2c");
        jp2.extend(codestream);
        assert_eq!(
            Joined::new(&[jp2]).declared(0),
            Declared::Image {
                samples: 64 * 64 * 3,
                tiles: 4096
            }
        );
    }

    #[test]
    fn a_jpeg_frame_header_is_found_after_other_segments() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xFF];
        jpeg.extend([0xFF, 0xC1, 0, 11, 8, 0xFF, 0xFF, 0x01, 0x00, 3]);
        assert_eq!(
            Joined::new(&[jpeg]).declared(0),
            Declared::Image {
                samples: 65_535 * 256 * 3,
                tiles: 1
            }
        );
        let endless: Vec<u8> = [0xFF, 0xD8]
            .into_iter()
            .chain(std::iter::repeat_n([0xFF, 0xE1, 0, 2], 300).flatten())
            .collect();
        assert_eq!(Joined::new(&[endless]).declared(0), Declared::Unreadable);
        assert_eq!(
            Joined::new(&[b"raw pixels".to_vec()]).declared(0),
            Declared::Nothing
        );
    }
}
