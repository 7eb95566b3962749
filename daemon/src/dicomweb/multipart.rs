//! `multipart/related` bodies (RFC 2387) as DICOMweb uses them (PS3.18 §8.6.1.2): the
//! retrieve answers written part by part, so a study streams out one instance at a time, and
//! the boundary of a STOW-RS request read from its `Content-Type`.

use super::media::MediaType;

/// A fresh boundary: random, so no part's bytes can hold it by chance.
pub fn new_boundary() -> String {
    let mut random = [0u8; 16];
    // Without the OS's randomness the time still makes a boundary no file holds by chance.
    if getrandom::getrandom(&mut random).is_err() {
        random[..16].copy_from_slice(&crate::now_ms().to_le_bytes().repeat(2)[..16]);
    }
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("tpg-{hex}")
}

/// The `Content-Type` of an answer whose parts are of `part_type`.
pub fn content_type(boundary: &str, part_type: &str) -> String {
    let essence = part_type.split(';').next().unwrap_or(part_type).trim();
    format!("multipart/related; type=\"{essence}\"; boundary={boundary}")
}

/// The head of one part: its boundary line and headers, up to the part's bytes.
pub fn part_head(boundary: &str, part_type: &str, location: Option<&str>) -> Vec<u8> {
    let mut head = format!("--{boundary}\r\nContent-Type: {part_type}\r\n");
    if let Some(location) = location {
        head.push_str(&format!("Content-Location: {location}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// What ends a part's bytes.
pub const PART_END: &[u8] = b"\r\n";

/// The closing boundary line.
pub fn closing(boundary: &str) -> Vec<u8> {
    format!("--{boundary}--\r\n").into_bytes()
}

/// A whole body of `parts` (each `(media type, bytes)`), for answers small enough to build
/// at once (frames, bulk data).
pub fn body(boundary: &str, parts: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (part_type, bytes) in parts {
        out.extend(part_head(boundary, part_type, None));
        out.extend_from_slice(bytes);
        out.extend_from_slice(PART_END);
    }
    out.extend(closing(boundary));
    out
}

/// Why a STOW-RS request's body cannot be read (415).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotMultipart(pub String);

/// The boundary of a STOW-RS request: its `Content-Type` must be `multipart/related` whose
/// `type`, when given, is `application/dicom` (PS3.18 §10.5.1.1).
pub fn stow_boundary(content_type: Option<&str>) -> Result<String, NotMultipart> {
    let fix = "send multipart/related; type=\"application/dicom\"; boundary=… with one DICOM \
               Part 10 file in each part";
    let Some(media) = content_type.and_then(MediaType::parse) else {
        return Err(NotMultipart(format!(
            "the request has no Content-Type; {fix}"
        )));
    };
    if media.essence != "multipart/related" {
        return Err(NotMultipart(format!(
            "the request is {}, not multipart/related; {fix}",
            media.essence
        )));
    }
    if let Some(t) = media.param("type") {
        if !t.eq_ignore_ascii_case("application/dicom") {
            return Err(NotMultipart(format!(
                "parts of type {t} are not stored (only application/dicom: the DICOM JSON and \
                 bulk data form is not taken); {fix}"
            )));
        }
    }
    match media.param("boundary") {
        Some(b) if !b.is_empty() => Ok(b.to_owned()),
        _ => Err(NotMultipart(format!(
            "the Content-Type names no boundary; {fix}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_parts_between_boundaries() {
        let body = body("b", &[("application/octet-stream".into(), b"xy".to_vec())]);
        assert_eq!(
            body,
            b"--b\r\nContent-Type: application/octet-stream\r\n\r\nxy\r\n--b--\r\n"
        );
        assert_eq!(
            content_type("b", "application/dicom; transfer-syntax=*"),
            "multipart/related; type=\"application/dicom\"; boundary=b"
        );
        assert_ne!(new_boundary(), new_boundary());
    }

    #[test]
    fn stow_takes_multipart_related_of_dicom_only() {
        assert_eq!(
            stow_boundary(Some(
                "multipart/related; type=\"application/dicom\"; boundary=\"x y\""
            )),
            Ok("x y".into())
        );
        assert_eq!(
            stow_boundary(Some("multipart/related; boundary=z")),
            Ok("z".into())
        );
        for bad in [
            None,
            Some("application/dicom"),
            Some("multipart/related; type=\"application/dicom+json\"; boundary=q"),
            Some("multipart/related; type=\"application/dicom\""),
        ] {
            let e = stow_boundary(bad).unwrap_err();
            assert!(e.0.contains("send multipart/related"), "{e}");
        }
    }
}
