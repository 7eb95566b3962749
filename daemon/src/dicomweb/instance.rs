//! A stored instance as DICOMweb serves it: its header in the DICOM JSON model (PS3.18 §F)
//! with large binary values and the pixel data as `BulkDataURI`s, its frames as stored or
//! decoded, a bulk value, and the whole file in another transfer syntax.
//!
//! Every file is walked first as the viewer's are (`crate::render::readable`), and dicom-rs
//! runs guarded: a file the archive holds must not bring down the server that shows it. A
//! header is read up to the pixel data, so a 1 GiB cine costs its header only.

use std::path::Path;

use dicom_core::header::Header as _;
use dicom_core::{DicomValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::{Map, Value};

use super::media::{Syntax, EXPLICIT_LE};
use super::tag_key;
use crate::render::{guarded, RenderError};

/// Binary values longer than this are sent as bulk data rather than inline base64.
pub const INLINE_MAX: u32 = 1024;

/// An instance's data set up to its pixel data, and what the metadata says of the rest.
#[derive(Debug, Clone)]
pub struct Header {
    pub dataset: InMemDicomObject,
    /// The stored transfer syntax.
    pub transfer_syntax: String,
    /// The pixel data's VR, when the file has pixel data.
    pub pixel_data: Option<VR>,
    /// Top-level elements named as bulk data rather than kept: binary values longer than
    /// [`INLINE_MAX`] (dropped from `dataset` once read, so a cached header stays small), and
    /// those after the pixel data (trailing padding, say; never read), with their VRs.
    pub bulk: Vec<(Tag, VR)>,
}

/// Reads the header of the file at `path`.
pub fn header(path: &Path) -> Result<Header, RenderError> {
    // The walk `render::readable` makes, with where each top-level element starts: once.
    std::fs::metadata(path).map_err(|e| RenderError::Open(e.to_string()))?;
    let scan = store::structure::layout(path, &[]).map_err(RenderError::Unsafe)?;
    crate::render::sound(&scan)?;
    let top_level = scan.top_level;
    let pixels_at = top_level
        .iter()
        .position(|(tag, _)| *tag == (0x7FE0, 0x0010));
    let has_pixels = pixels_at.is_some();
    let after_pixels: Vec<(Tag, VR)> = pixels_at
        .map(|at| {
            top_level[at + 1..]
                .iter()
                .map(|((group, element), _)| {
                    let tag = Tag(*group, *element);
                    let vr = dicom_core::dictionary::DataDictionary::by_tag(
                        &dicom_dictionary_std::StandardDataDictionary,
                        tag,
                    )
                    .map_or(VR::UN, |e| {
                        dicom_core::dictionary::DataDictionaryEntry::vr(e).relaxed()
                    });
                    (tag, vr)
                })
                .collect()
        })
        .unwrap_or_default();
    let file = guarded(|| {
        dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
            .map_err(|e| RenderError::Open(e.to_string()))
    })?;
    let transfer_syntax = file
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_owned();
    // It goes into answers' headers (a part's `transfer-syntax`): a UID, nothing else.
    let is_uid = !transfer_syntax.is_empty()
        && transfer_syntax.len() <= 64
        && transfer_syntax
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.');
    if !is_uid {
        return Err(RenderError::Decode(
            "the file's Transfer Syntax UID is not a UID".into(),
        ));
    }
    let mut dataset = file.into_inner();
    let mut bulk: Vec<(Tag, VR)> = dataset
        .iter()
        .filter(|e| is_bulk(e))
        .map(|e| (e.tag(), e.vr()))
        .collect();
    for (tag, _) in &bulk {
        dataset.remove_element(*tag);
    }
    bulk.extend(after_pixels);
    let pixel_data = has_pixels.then(|| {
        let bits = dataset
            .element(tags::BITS_ALLOCATED)
            .ok()
            .and_then(|e| e.to_int::<u16>().ok())
            .unwrap_or(8);
        if super::media::compressed_media_type(&transfer_syntax).is_some() || bits <= 8 {
            VR::OB
        } else {
            VR::OW
        }
    });
    Ok(Header {
        dataset,
        transfer_syntax,
        pixel_data,
        bulk,
    })
}

impl Header {
    /// A top-level value as text (trimmed), when present and not empty.
    pub fn text(&self, tag: Tag) -> Option<String> {
        let e = self.dataset.element(tag).ok()?;
        let text = e.to_str().ok()?;
        let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
        (!text.is_empty()).then(|| text.to_owned())
    }

    /// The metadata of the instance (PS3.18 §8.7.3.1.4): every attribute, large binary values
    /// and the pixel data as bulk data at `{base}/bulk/{tag}`, and the stored transfer syntax
    /// as Available Transfer Syntax UID (0008,3002).
    pub fn metadata(&self, base: &str) -> Result<Map<String, Value>, RenderError> {
        let bulk = |tag: Tag| format!("{base}/bulk/{}", tag_key(tag));
        let mut out = dataset_json(&self.dataset, Some(&bulk))?;
        out.insert(
            tag_key(tags::AVAILABLE_TRANSFER_SYNTAX_UID),
            serde_json::json!({ "vr": "UI", "Value": [self.transfer_syntax] }),
        );
        let pixels = self.pixel_data.map(|vr| (tags::PIXEL_DATA, vr));
        for (tag, vr) in pixels.into_iter().chain(self.bulk.iter().copied()) {
            out.insert(
                tag_key(tag),
                serde_json::json!({ "vr": vr.to_string(), "BulkDataURI": bulk(tag) }),
            );
        }
        Ok(out)
    }
}

/// A data set in the DICOM JSON model, keyed and ordered by tag. With `bulk`, binary values
/// longer than [`INLINE_MAX`] are `BulkDataURI`s it names; without, they are left out (a
/// search answer holds no bulk data). Group lengths are left out.
///
/// The `dicom-json` crate encodes each element; what it does not do is done here: decimal and
/// integer strings become JSON numbers and empty values `null` (PS3.18 §F.2.3, §F.2.5), and
/// bulk data is named by URI.
pub fn dataset_json(
    dataset: &InMemDicomObject,
    bulk: Option<&dyn Fn(Tag) -> String>,
) -> Result<Map<String, Value>, RenderError> {
    let mut out = Map::new();
    for element in dataset.iter() {
        let tag = element.tag();
        if tag.element() == 0 || tag == tags::PIXEL_DATA {
            continue;
        }
        let vr = element.vr();
        if is_bulk(element) {
            if let Some(bulk) = bulk {
                out.insert(
                    tag_key(tag),
                    serde_json::json!({ "vr": vr.to_string(), "BulkDataURI": bulk(tag) }),
                );
            }
            continue;
        }
        // dicom-json panics on a value its VR cannot hold (a date as a number, say); a file
        // must not take the server down with it.
        let mut value = guarded(|| {
            dicom_json::to_value(element).map_err(|e| RenderError::Decode(e.to_string()))
        })?;
        tidy(&mut value);
        out.insert(tag_key(tag), value);
    }
    Ok(out)
}

/// A binary value longer than [`INLINE_MAX`]: sent as bulk data.
fn is_bulk(element: &dicom_object::mem::InMemElement) -> bool {
    matches!(
        element.vr(),
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    ) && element
        .value()
        .primitive()
        .is_some_and(|v| v.calculate_byte_len() > INLINE_MAX as usize)
}

/// Decimal and integer strings as numbers, empty values as `null`, in nested items too.
fn tidy(element: &mut Value) {
    let vr = element
        .get("vr")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(Value::Array(values)) = element.get_mut("Value") else {
        return;
    };
    for v in values.iter_mut() {
        match v {
            Value::String(s) if s.trim().is_empty() => *v = Value::Null,
            Value::String(s) if vr == "IS" || vr == "DS" => {
                let t = s.trim();
                if let Ok(n) = t.parse::<i64>() {
                    *v = Value::from(n);
                } else if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
                {
                    *v = Value::Number(n);
                }
            }
            Value::Object(item) if vr == "SQ" => {
                for (_, nested) in item.iter_mut() {
                    tidy(nested);
                }
            }
            Value::Object(name) if vr == "PN" && name.is_empty() => *v = Value::Null,
            _ => {}
        }
    }
    // An attribute without a value has no "Value" at all (PS3.18 §F.2.5).
    if values.iter().all(Value::is_null) {
        if let Some(map) = element.as_object_mut() {
            map.remove("Value");
        }
    }
}

/// The most bytes of frames one request is answered with: more is asked in several.
pub const MAX_FRAMES_BYTES: usize = 512 * 1024 * 1024;

/// The frames numbered `numbers` (from 1, PS3.18 §8.4.1.2) of the file at `path`: the
/// stored bytes of each (a native frame's bytes, or a compressed frame's fragments), or
/// decoded to native pixel data for Explicit VR Little Endian. At most [`MAX_FRAMES_BYTES`]
/// in all.
pub fn frames(path: &Path, numbers: &[u32], syntax: &Syntax) -> Result<Vec<Vec<u8>>, RenderError> {
    let _slot = crate::render::render_slot()?;
    guarded(|| {
        let obj = crate::render::open(path)?;
        let count = obj
            .element(tags::NUMBER_OF_FRAMES)
            .ok()
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        let pixel = obj
            .element(tags::PIXEL_DATA)
            .map_err(|_| RenderError::Decode("the instance has no pixel data".into()))?;
        // Native pixel data is read once, however many of its frames are asked for.
        let native = match pixel.value() {
            DicomValue::PixelSequence(_) => None,
            value => Some(
                value
                    .to_bytes()
                    .map_err(|e| RenderError::Decode(e.to_string()))?,
            ),
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        for &n in numbers {
            if n == 0 || n > count {
                return Err(RenderError::NoFrame {
                    frame: n,
                    frames: count,
                });
            }
            let index = n - 1;
            let frame = match (pixel.value(), syntax, &native) {
                (_, _, Some(bytes)) => native_frame(&obj, bytes, index)?,
                (DicomValue::PixelSequence(seq), Syntax::AsStored, None) => {
                    fragments_of(seq.offset_table(), seq.fragments(), index, count)?
                }
                (_, _, None) => {
                    use dicom_pixeldata::PixelDecoder;
                    let decoded = obj
                        .decode_pixel_data_frame(index)
                        .map_err(|e| RenderError::Decode(e.to_string()))?;
                    decoded.data().to_vec()
                }
            };
            total = total.saturating_add(frame.len());
            if total > MAX_FRAMES_BYTES {
                return Err(RenderError::Decode(format!(
                    "the frames asked for hold more than {} MiB; ask for fewer at a time",
                    MAX_FRAMES_BYTES >> 20
                )));
            }
            out.push(frame);
        }
        Ok(out)
    })
}

/// One native frame's bytes out of the whole pixel data.
fn native_frame(
    obj: &dicom_object::DefaultDicomObject,
    bytes: &[u8],
    index: u32,
) -> Result<Vec<u8>, RenderError> {
    let dim = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_int::<u64>().ok())
            .unwrap_or(0)
    };
    let bits = dim(tags::ROWS)
        .saturating_mul(dim(tags::COLUMNS))
        .saturating_mul(dim(tags::SAMPLES_PER_PIXEL).max(1))
        .saturating_mul(dim(tags::BITS_ALLOCATED));
    if bits == 0 || bits % 8 != 0 {
        return Err(RenderError::Decode(format!(
            "frames of {bits} bits do not fall on byte boundaries; retrieve the whole instance"
        )));
    }
    let size = bits / 8;
    let start = u64::from(index).saturating_mul(size);
    let end = start.saturating_add(size);
    if end > bytes.len() as u64 {
        return Err(RenderError::Decode(format!(
            "the pixel data holds {} bytes, too few for frame {}",
            bytes.len(),
            index + 1
        )));
    }
    Ok(bytes[start as usize..end as usize].to_vec())
}

/// The fragments of encapsulated frame `index` of `count` (PS3.5 §A.4): one fragment per
/// frame, all of them for a single frame, or grouped by the Basic Offset Table.
fn fragments_of(
    offsets: &[u32],
    fragments: &[Vec<u8>],
    index: u32,
    count: u32,
) -> Result<Vec<u8>, RenderError> {
    if count == 1 {
        return Ok(fragments.concat());
    }
    if fragments.len() == count as usize {
        return Ok(fragments[index as usize].clone());
    }
    if offsets.len() != count as usize {
        // No offset table: a JPEG, JPEG-LS or JPEG 2000 frame's codestream ends with FFD9
        // (EOI, EOC), so its fragments run up to the one that ends so.
        let mut frames: Vec<Vec<u8>> = vec![Vec::new()];
        for fragment in fragments {
            if let Some(last) = frames.last_mut() {
                last.extend_from_slice(fragment);
            }
            if fragment.ends_with(&[0xFF, 0xD9]) {
                frames.push(Vec::new());
            }
        }
        frames.retain(|f| !f.is_empty());
        if frames.len() == count as usize {
            return Ok(std::mem::take(&mut frames[index as usize]));
        }
        return Err(RenderError::Decode(format!(
            "{count} frames in {} fragments without an offset table to tell them apart",
            fragments.len()
        )));
    }
    let (from, to) = (
        u64::from(offsets[index as usize]),
        offsets
            .get(index as usize + 1)
            .map_or(u64::MAX, |o| u64::from(*o)),
    );
    // Each fragment takes its item header (8 bytes) and its bytes in the offset table's count.
    let mut at = 0u64;
    let mut out = Vec::new();
    for fragment in fragments {
        if at >= from && at < to {
            out.extend_from_slice(fragment);
        }
        at += 8 + fragment.len() as u64;
    }
    Ok(out)
}

/// A top-level value's bytes as bulk data: the native pixel data, or a binary value.
pub fn bulk(path: &Path, tag: Tag) -> Result<Vec<u8>, RenderError> {
    let _slot = crate::render::render_slot()?;
    guarded(|| {
        let obj = crate::render::open(path)?;
        let element = obj
            .element(tag)
            .map_err(|_| RenderError::Decode(format!("the instance has no {}", tag_key(tag))))?;
        match element.value() {
            DicomValue::PixelSequence(_) => Err(RenderError::Decode(
                "compressed pixel data is retrieved frame by frame (the frames resource)".into(),
            )),
            DicomValue::Sequence(_) => Err(RenderError::Decode(format!(
                "{} is a sequence, not bulk data",
                tag_key(tag)
            ))),
            value => value
                .to_bytes()
                .map(|b| b.into_owned())
                .map_err(|e| RenderError::Decode(e.to_string())),
        }
    })
}

/// The file at `path` as a Part 10 file in Explicit VR Little Endian, its pixel data decoded
/// first when compressed.
pub fn explicit_le_file(path: &Path) -> Result<Vec<u8>, RenderError> {
    let _slot = crate::render::render_slot()?;
    let object = transcoded(path, EXPLICIT_LE, MAX_CONVERTED)?;
    let mut out = Vec::new();
    object
        .write_all(&mut out)
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    Ok(out)
}

/// The most decoded pixel data converted to another transfer syntax at once.
pub const MAX_CONVERTED: u64 = 1 << 30;

/// The file at `path` opened and converted to transfer syntax `ts` (native: explicit or
/// implicit VR little endian), compressed pixel data decoded first, group lengths of the old
/// encoding left out. A file dicom-rs cannot read safely is refused before it is opened, and
/// one whose decoded pixel data would exceed `limit` bytes before it is decoded.
pub fn transcoded(
    path: &Path,
    ts: &str,
    limit: u64,
) -> Result<dicom_object::DefaultDicomObject, RenderError> {
    use dicom_encoding::TransferSyntaxIndex;
    use dicom_pixeldata::Transcode;
    let target = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| RenderError::Decode(format!("unknown transfer syntax {ts}")))?;
    guarded(|| {
        let mut object = crate::render::open(path)?;
        let dim = |tag| {
            object
                .element(tag)
                .ok()
                .and_then(|e| e.to_int::<u64>().ok())
                .unwrap_or(0)
        };
        let decoded = dim(tags::ROWS)
            .saturating_mul(dim(tags::COLUMNS))
            .saturating_mul(dim(tags::SAMPLES_PER_PIXEL).max(1))
            .saturating_mul(dim(tags::BITS_ALLOCATED).div_ceil(8))
            .saturating_mul(dim(tags::NUMBER_OF_FRAMES).max(1));
        if decoded > limit {
            return Err(RenderError::Decode(format!(
                "decoded, the instance would take {} MiB, more than the {} MiB converted at once; \
                 ask for it as stored (transfer-syntax=*)",
                decoded >> 20,
                limit >> 20
            )));
        }
        if object.meta().transfer_syntax().trim_end_matches('\0') != ts {
            object
                .transcode(target)
                .map_err(|e| RenderError::Decode(e.to_string()))?;
        }
        let lengths: Vec<Tag> = object
            .iter()
            .map(|e| e.header().tag)
            .filter(|t| t.element() == 0 && t.group() != 0x0002)
            .collect();
        for tag in lengths {
            object.remove_element(tag);
        }
        Ok(object)
    })
}

#[cfg(test)]
mod tests {
    use dicom_core::{DataElement, PrimitiveValue};

    use super::*;

    #[test]
    fn json_has_numbers_for_numeric_strings_nulls_for_empty_values_and_bulk_uris() {
        let mut ds = InMemDicomObject::new_empty();
        ds.put(DataElement::new(
            tags::SLICE_THICKNESS,
            VR::DS,
            PrimitiveValue::from("2.5 "),
        ));
        ds.put(DataElement::new(
            tags::INSTANCE_NUMBER,
            VR::IS,
            PrimitiveValue::from("7"),
        ));
        ds.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Wang^Wei=王^伟"),
        ));
        ds.put(DataElement::new(
            tags::ACCESSION_NUMBER,
            VR::SH,
            PrimitiveValue::from(""),
        ));
        ds.put(DataElement::new(
            Tag(0x6000, 0x3000),
            VR::OB,
            PrimitiveValue::from(vec![0u8; 2000]),
        ));
        let bulk = |t: Tag| format!("/b/{}", tag_key(t));
        let json = Value::Object(dataset_json(&ds, Some(&bulk)).unwrap());
        assert_eq!(json["00180050"]["Value"][0], serde_json::json!(2.5));
        assert_eq!(json["00200013"]["Value"][0], serde_json::json!(7));
        assert_eq!(json["00100010"]["Value"][0]["Alphabetic"], "Wang^Wei");
        assert_eq!(json["00100010"]["Value"][0]["Ideographic"], "王^伟");
        assert!(
            json["00080050"].get("Value").is_none(),
            "{}",
            json["00080050"]
        );
        assert_eq!(json["60003000"]["BulkDataURI"], "/b/60003000");
        let searched = Value::Object(dataset_json(&ds, None).unwrap());
        assert!(searched.get("60003000").is_none());
    }

    #[test]
    fn encapsulated_frames_follow_the_offset_table() {
        let fragments = vec![vec![1u8; 4], vec![2u8; 2], vec![3u8; 6]];
        // Frame 1 is the first two fragments (12 + 10 bytes with item headers), frame 2 the last.
        let offsets = [0u32, 22];
        assert_eq!(
            fragments_of(&offsets, &fragments, 0, 2).unwrap(),
            [vec![1u8; 4], vec![2u8; 2]].concat()
        );
        assert_eq!(
            fragments_of(&offsets, &fragments, 1, 2).unwrap(),
            vec![3u8; 6]
        );
        assert_eq!(fragments_of(&[], &fragments, 2, 3).unwrap(), vec![3u8; 6]);
        assert_eq!(fragments_of(&[], &fragments, 0, 1).unwrap().len(), 12);
        assert!(fragments_of(&[], &fragments, 0, 2).is_err());
        // Without an offset table, codestreams end with FFD9.
        let jpeg = vec![
            vec![0xFF, 0xD8, 1],
            vec![2, 0xFF, 0xD9],
            vec![0xFF, 0xD8, 0xFF, 0xD9],
        ];
        assert_eq!(
            fragments_of(&[], &jpeg, 0, 2).unwrap(),
            vec![0xFF, 0xD8, 1, 2, 0xFF, 0xD9]
        );
        assert_eq!(
            fragments_of(&[], &jpeg, 1, 2).unwrap(),
            vec![0xFF, 0xD8, 0xFF, 0xD9]
        );
    }
}
