//! DICOMweb (DICOM PS3.18) pieces both daemons share: negotiating what a request's `Accept`
//! asks for (`media`), `multipart/related` bodies written and read (`multipart`), a stored
//! instance's header in the DICOM JSON model with large values as `BulkDataURI`s and its
//! frames as stored or decoded (`instance`), and the STOW-RS answer (`stow`). The gateway
//! serves the retrieve and search services over its archive; the clinic agent takes STOW-RS
//! into its durable queue. Nothing here knows who asks: access is each daemon's policy.

pub mod instance;
pub mod media;
pub mod multipart;
pub mod stow;

/// The media type of DICOM JSON answers (PS3.18 §8.7.3.1).
pub const DICOM_JSON: &str = "application/dicom+json";

/// A tag as the DICOM JSON model keys it: eight upper-case hex digits (PS3.18 §F.2.1).
pub fn tag_key(tag: dicom_core::Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// A tag from its eight hex digits (`0020000D`), as a path or `includefield` names it.
pub fn parse_tag_key(key: &str) -> Option<dicom_core::Tag> {
    if key.len() != 8 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let group = u16::from_str_radix(&key[..4], 16).ok()?;
    let element = u16::from_str_radix(&key[4..], 16).ok()?;
    Some(dicom_core::Tag(group, element))
}
