//! Frames of stored DICOM instances as 8-bit images: PNG frames for the specialist's viewer
//! at the hospital, and the JPEG preview sheet a clinic sends ahead of an urgent case's
//! images. Decoding uses dicom-pixeldata's pure-Rust codecs (uncompressed, RLE, JPEG
//! baseline/lossless, JPEG 2000); windowing is done here on the rescaled values, so 8-, 12-
//! and 16-bit images behave alike. Anything that cannot be decoded is an error the page shows
//! as a placeholder.
//!
//! dicom-rs reads the whole file and trusts it: a valid file holding a sequence of unknown VR
//! made it allocate gigabytes. So every file is walked first (`store::structure`: lengths,
//! VRs, nesting) and refused when dicom-rs would mis-read it; a frame's decoded size is bounded
//! before decoding; and at most [`RENDER_SLOTS`] renders run at once, so a burst of frame
//! requests cannot hold several decoded studies in memory together.

mod codestream;

use std::path::Path;
use std::time::Duration;

use dicom_pixeldata::{PhotometricInterpretation, PixelDecoder};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read the file: {0}")]
    Open(String),
    #[error("cannot decode the pixel data: {0}")]
    Decode(String),
    #[error("frame {frame} does not exist; the image has {frames}")]
    NoFrame { frame: u32, frames: u32 },
    #[error("the file cannot be opened safely by the built-in viewer ({0}); open the study in the hospital's PACS viewer")]
    Unsafe(String),
    #[error("the viewer is busy rendering other images; try again in a moment")]
    Busy,
}

/// Renders running at once, across the process; others wait up to 10 s, then answer busy.
pub const RENDER_SLOTS: usize = 2;
static RENDERS: crate::slots::Slots =
    crate::slots::Slots::new(RENDER_SLOTS, Duration::from_secs(10));

pub(crate) fn render_slot() -> Result<crate::slots::Slot<'static>, RenderError> {
    RENDERS.take().ok_or(RenderError::Busy)
}

/// Whether dicom-rs may open the file at `path`: its structure is sound (every length fits,
/// every VR is real, nesting is bounded) and it holds no sequence of unknown VR, which
/// dicom-rs mis-reads into huge allocations. The re-encoder asks this too.
pub fn readable(path: &Path) -> Result<(), RenderError> {
    std::fs::metadata(path).map_err(|e| RenderError::Open(e.to_string()))?;
    sound(&store::structure::scan(path, &[]).map_err(RenderError::Unsafe)?)
}

/// What [`readable`] asks of a file's walk, for a caller that walked it already.
pub(crate) fn sound(scan: &store::structure::Scan) -> Result<(), RenderError> {
    if scan.unknown_vr_sequences > 0 {
        return Err(RenderError::Unsafe(format!(
            "it holds {} sequence(s) of unknown VR (UN of undefined length)",
            scan.unknown_vr_sequences
        )));
    }
    Ok(())
}

/// What the viewer needs to know before it asks for frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameInfo {
    pub frames: u32,
    /// The window the image opens with (center, width): its own, or its value range.
    pub window: (f64, f64),
}

/// The most samples of one decoded frame (rows × columns × samples per pixel) rendered:
/// 64 Mi, about 256 MiB as the floats windowing works on — a 8k × 8k mammogram fits. A header
/// claiming more is refused before anything is decoded.
const MAX_FRAME_SAMPLES: u64 = 64 * 1024 * 1024;

/// JPEG 2000 tiles at most (ITU-T T.800 §A.4.2: a tile's index is 16 bits).
const MAX_TILES: u64 = 65_535;

/// Opens a file that passed [`readable`] with dicom-rs, within the viewer's bounds.
pub(crate) fn open(path: &Path) -> Result<dicom_object::DefaultDicomObject, RenderError> {
    readable(path)?;
    let obj =
        guarded(|| dicom_object::open_file(path).map_err(|e| RenderError::Open(e.to_string())))?;
    within_bounds(&obj)?;
    Ok(obj)
}

/// Whether dicom-rs may decode the frames of `obj`: a frame of at most [`MAX_FRAME_SAMPLES`]
/// by the DICOM header, and no compressed frame whose own header declares more samples than
/// that (the decoders allocate what their header says) or more JPEG 2000 tiles than the
/// standard allows. The re-encoder asks this too.
pub fn within_bounds(obj: &dicom_object::DefaultDicomObject) -> Result<(), RenderError> {
    let dim = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_int::<u64>().ok())
            .unwrap_or(0)
    };
    let samples = dim(dicom_dictionary_std::tags::ROWS)
        .saturating_mul(dim(dicom_dictionary_std::tags::COLUMNS))
        .saturating_mul(dim(dicom_dictionary_std::tags::SAMPLES_PER_PIXEL).max(1));
    if samples > MAX_FRAME_SAMPLES {
        return Err(RenderError::Decode(format!(
            "a frame of {samples} samples is larger than the viewer renders ({MAX_FRAME_SAMPLES})"
        )));
    }
    let fragments = obj
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .ok()
        .and_then(|e| e.value().fragments());
    let run = codestream::Joined::new(fragments.unwrap_or_default());
    for &start in run.fragment_starts() {
        match run.declared(start) {
            codestream::Declared::Nothing => {}
            codestream::Declared::Image {
                samples: declared,
                tiles,
            } => {
                if declared > samples || tiles > MAX_TILES {
                    return Err(RenderError::Decode(format!(
                        "a compressed frame declares {declared} samples in {tiles} tile(s) where \
                         the header says {samples} samples"
                    )));
                }
            }
            codestream::Declared::Unreadable => {
                return Err(RenderError::Decode(
                    "a compressed frame's header cannot be read within bounds".into(),
                ))
            }
        }
    }
    Ok(())
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

/// What the viewer writes beside a frame, read by the structural walk alone (nothing decoded):
/// who and what it shows, and where the slice is. Patient data: for the page, never a log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Described {
    /// Number of Frames (0028,0008), at least 1 and at most [`MAX_FRAMES`].
    pub frames: u32,
    /// Patient's Name (0010,0010) with its components separated by spaces.
    pub patient_name: String,
    pub study_description: String,
    /// Study Date (0008,0020) as `YYYY-MM-DD` when it is a date.
    pub study_date: String,
    pub series_description: String,
    pub series_number: String,
    /// The slice's position along the patient axis in mm: Slice Location (0020,1041), or the
    /// last coordinate of Image Position (Patient) (0020,0032).
    pub position: Option<f64>,
}

/// The most frames the viewer lists for one instance.
pub const MAX_FRAMES: u32 = 10_000;

/// Reads what the viewer writes beside the frames of the file at `path` (see [`Described`]).
pub fn describe(path: &Path) -> Result<Described, RenderError> {
    const PATIENT_NAME: (u16, u16) = (0x0010, 0x0010);
    const STUDY_DATE: (u16, u16) = (0x0008, 0x0020);
    const STUDY_DESCRIPTION: (u16, u16) = (0x0008, 0x1030);
    const SERIES_DESCRIPTION: (u16, u16) = (0x0008, 0x103E);
    const SERIES_NUMBER: (u16, u16) = (0x0020, 0x0011);
    const IMAGE_POSITION: (u16, u16) = (0x0020, 0x0032);
    const SLICE_LOCATION: (u16, u16) = (0x0020, 0x1041);
    const NUMBER_OF_FRAMES: (u16, u16) = (0x0028, 0x0008);
    let scan = store::structure::scan(
        path,
        &[
            PATIENT_NAME,
            STUDY_DATE,
            STUDY_DESCRIPTION,
            SERIES_DESCRIPTION,
            SERIES_NUMBER,
            IMAGE_POSITION,
            SLICE_LOCATION,
            NUMBER_OF_FRAMES,
        ],
    )
    .map_err(RenderError::Unsafe)?;
    let value = |tag| scan.values.get(&tag).map(|v| v.trim()).unwrap_or("");
    let number = |text: &str| text.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    let frames = value(NUMBER_OF_FRAMES)
        .parse::<u32>()
        .unwrap_or(1)
        .clamp(1, MAX_FRAMES);
    let date = value(STUDY_DATE);
    let study_date = if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..])
    } else {
        date.to_owned()
    };
    let position = number(value(SLICE_LOCATION))
        .or_else(|| value(IMAGE_POSITION).split('\\').nth(2).and_then(number));
    Ok(Described {
        frames,
        // The first of the name's representations (alphabetic, ideographic, phonetic).
        patient_name: value(PATIENT_NAME)
            .split('=')
            .find(|group| !group.trim().is_empty())
            .unwrap_or("")
            .split('^')
            .filter(|p| !p.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" "),
        study_description: value(STUDY_DESCRIPTION).to_owned(),
        study_date,
        series_description: value(SERIES_DESCRIPTION).to_owned(),
        series_number: value(SERIES_NUMBER).to_owned(),
        position,
    })
}

/// Reads the first frame to learn the image's size, frame count and opening window.
pub fn info(path: &Path) -> Result<FrameInfo, RenderError> {
    let _slot = render_slot()?;
    guarded(|| {
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
    })
}

/// Runs dicom-rs on a file that passed [`readable`], turning a panic into a decode error. Its
/// pixel decoders still index past the end of some corrupt data: fuzzing found an RLE frame
/// whose segment ends early that panics dicom-transfer-syntax-registry 0.10.1
/// (`rle_lossless.rs:223`). A render runs on a blocking thread of the daemon, whose pages and
/// link must outlive any one file; the re-encoder of the PACS forwarding uses this too.
pub fn guarded<T>(decode: impl FnOnce() -> Result<T, RenderError>) -> Result<T, RenderError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(RenderError::Decode(format!(
            "the DICOM decoder failed on this file ({what})"
        )))
    })
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

/// One frame windowed to 8 bits per sample.
struct Frame8 {
    width: u32,
    height: u32,
    colour: bool,
    /// `width × height` samples, three per pixel when `colour`.
    pixels: Vec<u8>,
}

/// Decodes `frame` (from 0) and windows it at `window` (center, width) or at the image's own.
fn frame8(path: &Path, frame: u32, window: Option<(f64, f64)>) -> Result<Frame8, RenderError> {
    guarded(|| frame8_of(path, frame, window))
}

fn frame8_of(path: &Path, frame: u32, window: Option<(f64, f64)>) -> Result<Frame8, RenderError> {
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
    let colour = is_colour(&decoded);
    let pixels = if colour {
        decoded.to_vec_frame(0).map_err(decode)?
    } else {
        let values: Vec<f32> = decoded.to_vec_frame(0).map_err(decode)?;
        let (center, width) = window
            // A window from the address bar may be anything, NaN included.
            .filter(|(c, w)| c.is_finite() && w.is_finite() && *w >= 1.0)
            .or_else(|| own_window(&decoded))
            .unwrap_or_else(|| range_window(&values));
        let invert =
            *decoded.photometric_interpretation() == PhotometricInterpretation::Monochrome1;
        values
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
            .collect()
    };
    let channels = if colour { 3 } else { 1 };
    let needed = (width as usize) * (height as usize) * channels;
    if pixels.len() < needed || needed == 0 {
        return Err(RenderError::Decode(format!(
            "{} samples for a {width}×{height} frame",
            pixels.len()
        )));
    }
    let mut pixels = pixels;
    pixels.truncate(needed);
    Ok(Frame8 {
        width,
        height,
        colour,
        pixels,
    })
}

/// Renders `frame` (from 0) as a PNG, windowed at `window` (center, width) or at the
/// image's own window.
pub fn png(path: &Path, frame: u32, window: Option<(f64, f64)>) -> Result<Vec<u8>, RenderError> {
    rendered(path, frame, window, None, Picture::Png)
}

/// The picture formats a frame renders to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    Png,
    /// Quality 90, for DICOMweb's `rendered` and `thumbnail` resources.
    Jpeg,
}

impl Picture {
    pub fn media_type(self) -> &'static str {
        match self {
            Picture::Png => "image/png",
            Picture::Jpeg => "image/jpeg",
        }
    }
}

/// Renders `frame` (from 0) windowed as [`png`] does, shrunk to fit `fit` × `fit` pixels when
/// asked (a thumbnail), in `picture`'s format.
pub fn rendered(
    path: &Path,
    frame: u32,
    window: Option<(f64, f64)>,
    fit: Option<u32>,
    picture: Picture,
) -> Result<Vec<u8>, RenderError> {
    let mut f = {
        let _slot = render_slot()?;
        frame8(path, frame, window)?
    };
    if let Some(side) = fit.filter(|side| f.width.max(f.height) > *side) {
        f = downsample(&f, side);
    }
    let mut out = Vec::new();
    match picture {
        Picture::Png => {
            let colour = if f.colour {
                png::ColorType::Rgb
            } else {
                png::ColorType::Grayscale
            };
            let mut encoder = png::Encoder::new(&mut out, f.width, f.height);
            encoder.set_color(colour);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_compression(png::Compression::Fast);
            let mut writer = encoder
                .write_header()
                .map_err(|e| RenderError::Decode(e.to_string()))?;
            writer
                .write_image_data(&f.pixels)
                .map_err(|e| RenderError::Decode(e.to_string()))?;
        }
        Picture::Jpeg => {
            let (Ok(width), Ok(height)) = (u16::try_from(f.width), u16::try_from(f.height)) else {
                return Err(RenderError::Decode(format!(
                    "a {}×{} frame is too large for JPEG; ask for image/png",
                    f.width, f.height
                )));
            };
            let colour = if f.colour {
                jpeg_encoder::ColorType::Rgb
            } else {
                jpeg_encoder::ColorType::Luma
            };
            jpeg_encoder::Encoder::new(&mut out, 90)
                .encode(&f.pixels, width, height, colour)
                .map_err(|e| RenderError::Decode(e.to_string()))?;
        }
    }
    Ok(out)
}

/// The side of one frame's tile on a preview sheet, in pixels.
pub const PREVIEW_TILE: u32 = 256;

/// The most frames a preview sheet shows.
pub const PREVIEW_FRAMES: usize = 4;

/// Which frames a series' preview shows: up to [`PREVIEW_FRAMES`] spread evenly from the first
/// to the last of `count` instances (in their order), the middle frame of each. A series of one
/// multi-frame instance (a cine loop) shows frames spread over that instance instead, which
/// [`preview_sheet`] works out once it has opened it.
pub fn key_instances(count: usize) -> Vec<usize> {
    match count {
        0 => Vec::new(),
        n if n <= PREVIEW_FRAMES => (0..n).collect(),
        n => (0..PREVIEW_FRAMES)
            .map(|i| (i * (n - 1) + (PREVIEW_FRAMES - 1) / 2) / (PREVIEW_FRAMES - 1))
            .collect(),
    }
}

/// A preview sheet: key frames side by side (two per row), each downsampled by averaging into
/// a tile of at most [`PREVIEW_TILE`] pixels a side, as one JPEG of tens of kilobytes.
pub struct Sheet {
    pub jpeg: Vec<u8>,
    /// Frames on the sheet.
    pub frames: u32,
}

/// Makes the preview sheet of a series from its instances' files, in their order. Frames that
/// cannot be decoded are left out; a series with none that can (a waveform, say) has no sheet.
pub fn preview_sheet(paths: &[&Path]) -> Result<Sheet, RenderError> {
    let _slot = render_slot()?;
    let mut picks: Vec<(&Path, Option<u32>)> = key_instances(paths.len())
        .into_iter()
        .map(|i| (paths[i], None))
        .collect();
    if let [only] = paths {
        let frames = open(only).map(|o| number_of_frames(&o)).unwrap_or(1);
        picks = key_instances(frames as usize)
            .into_iter()
            .map(|f| (*only, Some(f as u32)))
            .collect();
    }
    let mut tiles = Vec::new();
    let mut last_error = None;
    for (path, frame) in picks {
        let frame = match frame {
            Some(f) => f,
            None => open(path).map(|o| number_of_frames(&o) / 2).unwrap_or(0),
        };
        match frame8(path, frame, None) {
            Ok(f) => tiles.push(downsample(&f, PREVIEW_TILE)),
            Err(e) => last_error = Some(e),
        }
    }
    if tiles.is_empty() {
        return Err(last_error.unwrap_or(RenderError::Decode("the series has no images".into())));
    }
    let colour = tiles.iter().any(|t| t.colour);
    let columns = tiles.len().min(2) as u32;
    let rows = tiles.len().div_ceil(2) as u32;
    let (width, height) = (columns * PREVIEW_TILE, rows * PREVIEW_TILE);
    let channels = if colour { 3 } else { 1 };
    let mut sheet = vec![0u8; (width * height) as usize * channels];
    for (n, tile) in tiles.iter().enumerate() {
        // Centred in its cell.
        let x0 = (n as u32 % 2) * PREVIEW_TILE + (PREVIEW_TILE - tile.width) / 2;
        let y0 = (n as u32 / 2) * PREVIEW_TILE + (PREVIEW_TILE - tile.height) / 2;
        for y in 0..tile.height {
            for x in 0..tile.width {
                let at = ((y0 + y) * width + x0 + x) as usize * channels;
                let from = (y * tile.width + x) as usize * if tile.colour { 3 } else { 1 };
                for c in 0..channels {
                    sheet[at + c] = tile.pixels[from + if tile.colour { c } else { 0 }];
                }
            }
        }
    }
    let mut jpeg = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut jpeg, 80);
    let colour_type = if colour {
        jpeg_encoder::ColorType::Rgb
    } else {
        jpeg_encoder::ColorType::Luma
    };
    encoder
        .encode(&sheet, width as u16, height as u16, colour_type)
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    Ok(Sheet {
        jpeg,
        frames: tiles.len() as u32,
    })
}

/// Shrinks a frame to fit `side` × `side`, each output pixel the mean of the block it covers.
fn downsample(f: &Frame8, side: u32) -> Frame8 {
    let factor = f.width.max(f.height).div_ceil(side).max(1);
    let (width, height) = ((f.width / factor).max(1), (f.height / factor).max(1));
    let channels = if f.colour { 3 } else { 1 };
    let mut pixels = Vec::with_capacity((width * height) as usize * channels);
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                let (mut sum, mut count) = (0u32, 0u32);
                for dy in 0..factor {
                    for dx in 0..factor {
                        let (sx, sy) = (x * factor + dx, y * factor + dy);
                        // A side shorter than the factor (a strip one pixel high) leaves blocks
                        // short: reading past it panicked the clinic's preview of a valid image.
                        if sx < f.width && sy < f.height {
                            sum += u32::from(f.pixels[(sy * f.width + sx) as usize * channels + c]);
                            count += 1;
                        }
                    }
                }
                pixels.push((sum / count.max(1)) as u8);
            }
        }
    }
    Frame8 {
        width,
        height,
        colour: f.colour,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_instances_spread_from_the_first_to_the_last() {
        assert_eq!(key_instances(0), Vec::<usize>::new());
        assert_eq!(key_instances(3), vec![0, 1, 2]);
        assert_eq!(key_instances(4), vec![0, 1, 2, 3]);
        assert_eq!(key_instances(24), vec![0, 8, 15, 23]);
        assert_eq!(key_instances(300), vec![0, 100, 199, 299]);
    }

    #[test]
    fn downsampling_averages_blocks_and_keeps_the_aspect() {
        let f = Frame8 {
            width: 4,
            height: 2,
            colour: false,
            pixels: vec![0, 100, 200, 200, 100, 0, 50, 50],
        };
        let d = downsample(&f, 2);
        assert_eq!((d.width, d.height), (2, 1));
        assert_eq!(d.pixels, vec![50, 125]);
    }

    #[test]
    fn a_strip_one_pixel_high_downsamples_without_reading_past_it() {
        let f = Frame8 {
            width: 1000,
            height: 1,
            colour: false,
            pixels: (0..1000).map(|i| (i % 4 * 60) as u8).collect(),
        };
        let d = downsample(&f, PREVIEW_TILE);
        assert_eq!((d.width, d.height), (250, 1));
        assert!(d.pixels.iter().all(|&p| p == 90), "{:?}", &d.pixels[..4]);
    }
}
