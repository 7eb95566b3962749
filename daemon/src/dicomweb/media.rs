//! What a DICOMweb request's `Accept` asks for (PS3.18 §8.7): media ranges with their `type`
//! and `transfer-syntax` parameters, tried in the order of their `q`, and the transfer syntax
//! each retrieve answers in.

/// Explicit VR Little Endian: what PS3.18 §8.7.3.5.2 answers when no transfer syntax is named.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian: native pixel data, the same frame bytes as [`EXPLICIT_LE`].
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

/// One media range of an `Accept` value, or a `Content-Type`.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaType {
    /// `type/subtype`, lower case.
    pub essence: String,
    /// Parameters, names in lower case, values unquoted.
    pub params: Vec<(String, String)>,
    pub q: f32,
}

impl MediaType {
    /// Parses one media type with its parameters; `None` when it has no `type/subtype`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut pieces = split_outside_quotes(text, ';').into_iter();
        let essence = pieces.next()?.trim().to_ascii_lowercase();
        if !essence.contains('/') {
            return None;
        }
        let mut params = Vec::new();
        let mut q = 1.0;
        for piece in pieces {
            let Some((name, value)) = piece.split_once('=') else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().trim_matches('"').to_owned();
            if name == "q" {
                q = value.parse().unwrap_or(0.0);
            } else {
                params.push((name, value));
            }
        }
        Some(Self { essence, params, q })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `type` parameter of a multipart range, lower case.
    fn part_type(&self) -> Option<String> {
        self.param("type").map(str::to_ascii_lowercase)
    }
}

/// Splits at `sep` where it is not inside double quotes.
fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&text[start..]);
    out
}

/// The media ranges of an `Accept` value, most wanted first (ties keep their order); no
/// header is `*/*`. Ranges of `q=0` are refusals and left out.
pub fn accepted(header: Option<&str>) -> Vec<MediaType> {
    let mut ranges: Vec<MediaType> = split_outside_quotes(header.unwrap_or("*/*"), ',')
        .into_iter()
        .filter_map(MediaType::parse)
        .filter(|m| m.q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    ranges
}

/// Whether a search or metadata request may be answered with DICOM JSON.
pub fn accepts_json(header: Option<&str>) -> bool {
    accepted(header).iter().any(|m| {
        matches!(
            m.essence.as_str(),
            "application/dicom+json" | "application/json" | "application/*" | "*/*"
        )
    })
}

/// The transfer syntax a retrieve answers in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Syntax {
    /// The bytes as the clinic sent them.
    AsStored,
    /// Converted: native pixel data in Explicit VR Little Endian.
    ExplicitLe,
}

/// Why a request cannot be answered as it asks (406).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAcceptable(pub String);

/// What a retrieve of whole instances answers in (PS3.18 §8.7.3.5): `multipart/related;
/// type="application/dicom"` as stored (`transfer-syntax=*` or the stored one) or converted to
/// Explicit VR Little Endian (the parameter's default, or named).
pub fn instances(header: Option<&str>, stored: &str) -> Result<Syntax, NotAcceptable> {
    for range in accepted(header) {
        let multipart = matches!(range.essence.as_str(), "multipart/related" | "multipart/*");
        let dicom_part = range.part_type().is_none_or(|t| t == "application/dicom");
        if !(range.essence == "*/*" || (multipart && dicom_part)) {
            continue;
        }
        match range.param("transfer-syntax") {
            Some("*") => return Ok(Syntax::AsStored),
            Some(ts) if ts == stored => return Ok(Syntax::AsStored),
            None | Some(EXPLICIT_LE) if stored == EXPLICIT_LE => return Ok(Syntax::AsStored),
            None | Some(EXPLICIT_LE) => return Ok(Syntax::ExplicitLe),
            Some(_) => continue,
        }
    }
    Err(NotAcceptable(format!(
        "instances are sent as multipart/related; type=\"application/dicom\" in their stored \
         transfer syntax ({stored}, ask with transfer-syntax=*) or in explicit VR little endian \
         ({EXPLICIT_LE})"
    )))
}

/// The single-part media type of pixel data compressed in transfer syntax `ts` (PS3.18 Table
/// 8.7.3-5), or `None` for native pixel data.
pub fn compressed_media_type(ts: &str) -> Option<&'static str> {
    Some(match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        "1.2.840.10008.1.2.4.100" | "1.2.840.10008.1.2.4.101" => "video/mpeg",
        "1.2.840.10008.1.2.4.102" | "1.2.840.10008.1.2.4.103" => "video/mp4",
        _ => return None,
    })
}

/// What a retrieve of frames or bulk data answers in, and each part's media type
/// (PS3.18 §8.7.3.3): the stored bytes (`transfer-syntax=*`, the stored syntax, or the
/// compressed media type it is stored in) or native pixel data in Explicit VR Little Endian
/// (`application/octet-stream` with the parameter's default or named).
pub fn frames(header: Option<&str>, stored: &str) -> Result<(Syntax, String), NotAcceptable> {
    // A deflated or big endian data set's frames, once read, are native little endian
    // pixels: that is what is sent, and said.
    let stored = match stored {
        "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.2" => EXPLICIT_LE,
        other => other,
    };
    let native = compressed_media_type(stored).is_none();
    for range in accepted(header) {
        let multipart = matches!(range.essence.as_str(), "multipart/related" | "multipart/*");
        if !(range.essence == "*/*" || multipart) {
            continue;
        }
        let part = range
            .part_type()
            .unwrap_or_else(|| "application/octet-stream".into());
        let ts = range.param("transfer-syntax");
        if part == "application/octet-stream" {
            let as_stored = format!("application/octet-stream; transfer-syntax={stored}");
            match ts {
                Some("*") => return Ok((Syntax::AsStored, as_stored)),
                Some(ts) if ts == stored => return Ok((Syntax::AsStored, as_stored)),
                None | Some(EXPLICIT_LE | IMPLICIT_LE) => {
                    let syntax = if native {
                        Syntax::AsStored
                    } else {
                        Syntax::ExplicitLe
                    };
                    return Ok((
                        syntax,
                        format!("application/octet-stream; transfer-syntax={EXPLICIT_LE}"),
                    ));
                }
                Some(_) => continue,
            }
        }
        if compressed_media_type(stored) == Some(part.as_str())
            && ts.is_none_or(|ts| ts == "*" || ts == stored)
        {
            return Ok((
                Syntax::AsStored,
                format!("{part}; transfer-syntax={stored}"),
            ));
        }
    }
    Err(NotAcceptable(format!(
        "frames are sent as multipart/related; type=\"application/octet-stream\" in their \
         stored transfer syntax ({stored}, ask with transfer-syntax=*) or decoded to explicit VR \
         little endian ({EXPLICIT_LE}){}",
        compressed_media_type(stored)
            .map(|m| format!(", or as type=\"{m}\""))
            .unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &str = "1.2.840.10008.1.2.4.50";

    #[test]
    fn media_ranges_keep_quoted_parameters_and_sort_by_q() {
        let list = accepted(Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*; q=0.5, \
             application/dicom+json",
        ));
        assert_eq!(list[0].essence, "application/dicom+json");
        assert_eq!(list[1].essence, "multipart/related");
        assert_eq!(list[1].param("type"), Some("application/dicom"));
        assert_eq!(list[1].param("transfer-syntax"), Some("*"));
        assert!(accepts_json(None));
        assert!(!accepts_json(Some("image/png")));
    }

    #[test]
    fn instances_default_to_explicit_le_and_star_keeps_the_stored_syntax() {
        let dicom = "multipart/related; type=\"application/dicom\"";
        assert_eq!(instances(Some(dicom), JPEG), Ok(Syntax::ExplicitLe));
        assert_eq!(instances(Some(dicom), EXPLICIT_LE), Ok(Syntax::AsStored));
        assert_eq!(
            instances(Some(&format!("{dicom}; transfer-syntax=*")), JPEG),
            Ok(Syntax::AsStored)
        );
        assert_eq!(
            instances(Some(&format!("{dicom}; transfer-syntax={JPEG}")), JPEG),
            Ok(Syntax::AsStored)
        );
        let refused = instances(Some(&format!("{dicom}; transfer-syntax=1.2.3")), JPEG);
        assert!(refused.unwrap_err().0.contains("transfer-syntax=*"));
        assert!(instances(Some("application/json"), JPEG).is_err());
    }

    #[test]
    fn frames_are_stored_bytes_or_decoded_to_explicit_le() {
        let octets = "multipart/related; type=\"application/octet-stream\"";
        assert_eq!(
            frames(Some(&format!("{octets}; transfer-syntax=*")), JPEG),
            Ok((
                Syntax::AsStored,
                format!("application/octet-stream; transfer-syntax={JPEG}")
            ))
        );
        assert_eq!(
            frames(Some(octets), JPEG).unwrap().0,
            Syntax::ExplicitLe,
            "no transfer syntax named: decoded"
        );
        assert_eq!(
            frames(Some(octets), IMPLICIT_LE).unwrap().0,
            Syntax::AsStored,
            "native frames are the same bytes in either little endian syntax"
        );
        assert_eq!(
            frames(Some("multipart/related; type=\"image/jpeg\""), JPEG),
            Ok((
                Syntax::AsStored,
                format!("image/jpeg; transfer-syntax={JPEG}")
            ))
        );
        assert!(frames(Some("multipart/related; type=\"image/jp2\""), JPEG).is_err());
        assert_eq!(
            frames(
                Some(&format!("{octets}; transfer-syntax=*")),
                "1.2.840.10008.1.2.2"
            ),
            Ok((
                Syntax::AsStored,
                format!("application/octet-stream; transfer-syntax={EXPLICIT_LE}")
            )),
            "big endian frames are sent as the little endian pixels they are once read"
        );
    }
}
