//! Frames of stored DICOM instances as PNG images for the specialist's viewer. Decoding uses
//! dicom-pixeldata's pure-Rust codecs (uncompressed, RLE, JPEG baseline/lossless, JPEG 2000);
//! windowing is done here on the rescaled values, so 8-, 12- and 16-bit images behave alike.
//! Anything that cannot be decoded is an error the page shows as a placeholder.

use std::path::Path;

use dicom_pixeldata::{PhotometricInterpretation, PixelDecoder};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read the file: {0}")]
    Open(String),
    #[error("cannot decode the pixel data: {0}")]
    Decode(String),
    #[error("frame {frame} does not exist; the image has {frames}")]
    NoFrame { frame: u32, frames: u32 },
}

/// What the viewer needs to know before it asks for frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameInfo {
    pub frames: u32,
    /// The window the image opens with (center, width): its own, or its value range.
    pub window: (f64, f64),
}

/// The largest frame rendered (rows × columns), far above any modality's; a header claiming
/// more is refused before anything is decoded.
const MAX_FRAME_PIXELS: u64 = 16384 * 16384;

fn open(path: &Path) -> Result<dicom_object::DefaultDicomObject, RenderError> {
    let obj = dicom_object::open_file(path).map_err(|e| RenderError::Open(e.to_string()))?;
    let dim = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_int::<u64>().ok())
            .unwrap_or(0)
    };
    let pixels = dim(dicom_dictionary_std::tags::ROWS) * dim(dicom_dictionary_std::tags::COLUMNS);
    if pixels > MAX_FRAME_PIXELS {
        return Err(RenderError::Decode(format!(
            "a frame of {pixels} pixels is larger than the viewer renders ({MAX_FRAME_PIXELS})"
        )));
    }
    Ok(obj)
}

/// One test for colour, used by both [`info`] and [`png`].
fn is_colour(decoded: &dicom_pixeldata::DecodedPixelData<'_>) -> bool {
    decoded.samples_per_pixel() == 3
}

fn number_of_frames(obj: &dicom_object::DefaultDicomObject) -> u32 {
    obj.element(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

/// Reads the first frame to learn the image's size, frame count and opening window.
pub fn info(path: &Path) -> Result<FrameInfo, RenderError> {
    let obj = open(path)?;
    let frames = number_of_frames(&obj);
    let decoded = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let window = if is_colour(&decoded) {
        (127.5, 256.0)
    } else {
        let values: Vec<f32> = decoded
            .to_vec_frame(0)
            .map_err(|e| RenderError::Decode(e.to_string()))?;
        own_window(&decoded).unwrap_or_else(|| range_window(&values))
    };
    Ok(FrameInfo { frames, window })
}

fn own_window(decoded: &dicom_pixeldata::DecodedPixelData<'_>) -> Option<(f64, f64)> {
    let w = decoded.window().ok().flatten()?.first()?;
    (w.width > 0.0).then_some((w.center, w.width))
}

fn range_window(values: &[f32]) -> (f64, f64) {
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    if lo > hi {
        return (127.5, 256.0);
    }
    let (lo, hi) = (f64::from(lo), f64::from(hi));
    ((lo + hi) / 2.0, (hi - lo).max(1.0))
}

/// Renders `frame` (from 0) as a PNG, windowed at `window` (center, width) or at the
/// image's own window.
pub fn png(path: &Path, frame: u32, window: Option<(f64, f64)>) -> Result<Vec<u8>, RenderError> {
    let obj = open(path)?;
    let frames = number_of_frames(&obj);
    if frame >= frames {
        return Err(RenderError::NoFrame { frame, frames });
    }
    let decoded = obj
        .decode_pixel_data_frame(frame)
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let (width, height) = (decoded.columns(), decoded.rows());
    let decode = |e: dicom_pixeldata::Error| RenderError::Decode(e.to_string());
    let (pixels, colour) = if is_colour(&decoded) {
        let rgb: Vec<u8> = decoded.to_vec_frame(0).map_err(decode)?;
        (rgb, png::ColorType::Rgb)
    } else {
        let values: Vec<f32> = decoded.to_vec_frame(0).map_err(decode)?;
        let (center, width) = window
            // A window from the address bar may be anything, NaN included.
            .filter(|(c, w)| c.is_finite() && w.is_finite() && *w >= 1.0)
            .or_else(|| own_window(&decoded))
            .unwrap_or_else(|| range_window(&values));
        let invert =
            *decoded.photometric_interpretation() == PhotometricInterpretation::Monochrome1;
        let grey = values
            .iter()
            .map(|v| {
                // DICOM's linear VOI function (PS3.3 C.11.2.1.2.1).
                let y = ((f64::from(*v) - (center - 0.5)) / (width - 1.0).max(1.0) + 0.5)
                    .clamp(0.0, 1.0);
                let g = (y * 255.0).round() as u8;
                if invert {
                    255 - g
                } else {
                    g
                }
            })
            .collect();
        (grey, png::ColorType::Grayscale)
    };
    let channels = if colour == png::ColorType::Rgb { 3 } else { 1 };
    if pixels.len() < (width as usize) * (height as usize) * channels {
        return Err(RenderError::Decode(format!(
            "{} samples for a {width}×{height} frame",
            pixels.len()
        )));
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(colour);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder
            .write_header()
            .map_err(|e| RenderError::Decode(e.to_string()))?;
        writer
            .write_image_data(&pixels[..(width as usize) * (height as usize) * channels])
            .map_err(|e| RenderError::Decode(e.to_string()))?;
    }
    Ok(out)
}
