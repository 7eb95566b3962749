//! ECG waveform objects (the Waveform Storage SOP classes, PS3.3 §A.34) drawn on ECG paper as
//! SVG for the specialist's viewer: the standard 12-lead layout (three rows of four 2.5 s
//! columns and a 10 s lead II rhythm strip) when the twelve leads are there, otherwise each
//! channel on a row of its own. The paper has 1 mm and 5 mm squares, a 1 mV calibration pulse
//! on every row, a gain of 5, 10 or 20 mm/mV and a speed of 25 or 50 mm/s.
//!
//! Reading ([`read`]) is separate from drawing ([`svg`]), and both are pure: the file is
//! walked and opened like every rendered file (`crate::render`), then the Waveform Module
//! (PS3.3 §C.10.9) is checked before a sample is read — channel and sample counts against the
//! data's length, the sample format, the channel's sensitivity and units — and what is drawn
//! is bounded: at most [`MAX_DRAWN`] channels and [`MAX_SECONDS`] of each, thinned to two
//! points per fifth of a millimetre of paper.

use std::fmt::Write as _;
use std::path::Path;

use dicom_core::value::PrimitiveValue;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::render::RenderError;

/// The root of the Waveform Storage SOP classes (12-lead and general ECG, haemodynamic,
/// audio...; PS3.4 §B.5).
pub const WAVEFORM_CLASSES: &str = "1.2.840.10008.5.1.4.1.1.9.";

/// Whether an instance of `sop_class` is a waveform rather than an image.
pub fn is_waveform(sop_class: &str) -> bool {
    sop_class.starts_with(WAVEFORM_CLASSES)
}

#[derive(Debug, thiserror::Error)]
pub enum WaveformError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("the waveform cannot be drawn: {0}")]
    Malformed(String),
    #[error(
        "the waveform is larger than the viewer draws: {0}; open it in the hospital's ECG system"
    )]
    TooLarge(String),
}

fn malformed(what: impl Into<String>) -> WaveformError {
    WaveformError::Malformed(what.into())
}

/// The most channels a multiplex group may declare.
pub const MAX_CHANNELS: usize = 64;
/// The most channels drawn when they are not the twelve standard leads.
pub const MAX_DRAWN: usize = 16;
/// The most seconds of each channel drawn (a resting ECG is 10 s).
pub const MAX_SECONDS: f64 = 10.0;
/// The highest sampling frequency accepted, in Hz (diagnostic ECGs sample at 250–1000 Hz).
pub const MAX_RATE: f64 = 20_000.0;

/// The twelve standard leads, in the order of a 12-lead report.
pub const TWELVE_LEADS: [&str; 12] = [
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
];

/// The 3 × 4 grid of the standard layout, as indices into [`TWELVE_LEADS`], by row.
const GRID: [[usize; 4]; 3] = [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]];

/// Seconds per column of the standard layout.
const COLUMN_SECONDS: f64 = 2.5;

/// How the paper runs: gain in mm/mV and speed in mm/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paper {
    gain: u32,
    speed: u32,
}

impl Paper {
    /// The gains offered, in mm/mV.
    pub const GAINS: [u32; 3] = [5, 10, 20];
    /// The speeds offered, in mm/s.
    pub const SPEEDS: [u32; 2] = [25, 50];

    /// The paper asked for; a gain or speed not offered (or not given) is the standard one,
    /// 10 mm/mV and 25 mm/s.
    pub fn new(gain: Option<u32>, speed: Option<u32>) -> Self {
        let standard = Self::default();
        Self {
            gain: gain
                .filter(|g| Self::GAINS.contains(g))
                .unwrap_or(standard.gain),
            speed: speed
                .filter(|s| Self::SPEEDS.contains(s))
                .unwrap_or(standard.speed),
        }
    }

    pub fn gain(self) -> u32 {
        self.gain
    }

    pub fn speed(self) -> u32 {
        self.speed
    }
}

impl Default for Paper {
    fn default() -> Self {
        Self {
            gain: 10,
            speed: 25,
        }
    }
}

/// One channel as drawn: its label and its samples in millivolts, at most
/// [`MAX_SECONDS`] of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Lead {
    pub label: String,
    pub millivolts: Vec<f32>,
}

/// The channels of one multiplex group to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Ecg {
    /// Samples per second.
    pub rate: f64,
    /// The twelve standard leads in [`TWELVE_LEADS`] order when `standard`; otherwise the
    /// group's first [`MAX_DRAWN`] channels in their order.
    pub leads: Vec<Lead>,
    pub standard: bool,
    /// Channels of the group left undrawn.
    pub left_out: usize,
}

/// Draws the waveform in the file at `path`: walked and opened like an image (refused when
/// unsound), read, drawn; at most [`crate::render::RENDER_SLOTS`] renders at once.
pub fn svg_file(path: &Path, paper: Paper) -> Result<String, WaveformError> {
    let ecg = {
        let _slot = crate::render::render_slot()?;
        let obj = crate::render::guarded(|| crate::render::open(path))?;
        read(&obj)?
    };
    Ok(svg(&ecg, paper))
}

/// Reads the waveform to draw out of `obj`: its multiplex group labelled RHYTHM, or its first.
pub fn read(obj: &InMemDicomObject) -> Result<Ecg, WaveformError> {
    let groups = obj
        .get(tags::WAVEFORM_SEQUENCE)
        .and_then(|e| e.items())
        .filter(|g| !g.is_empty())
        .ok_or_else(|| malformed("it has no Waveform Sequence (5400,0100)"))?;
    let group = groups
        .iter()
        .find(|g| text(g, tags::MULTIPLEX_GROUP_LABEL).eq_ignore_ascii_case("RHYTHM"))
        .unwrap_or(&groups[0]);
    read_group(group)
}

/// How the samples are stored (Waveform Sample Interpretation, PS3.3 §C.10.9.1.5).
#[derive(Debug, Clone, Copy)]
enum Format {
    Signed16,
    Unsigned16,
    Signed8,
    Unsigned8,
}

impl Format {
    fn bytes(self) -> usize {
        match self {
            Format::Signed16 | Format::Unsigned16 => 2,
            Format::Signed8 | Format::Unsigned8 => 1,
        }
    }
}

/// The Waveform Data as it was read: bytes (OB, or OW not yet split) or 16-bit words.
enum Data<'a> {
    Bytes(&'a [u8]),
    Words(&'a [u16]),
    SignedWords(&'a [i16]),
}

impl Data<'_> {
    fn len_bytes(&self) -> usize {
        match self {
            Data::Bytes(b) => b.len(),
            Data::Words(w) => w.len() * 2,
            Data::SignedWords(w) => w.len() * 2,
        }
    }

    /// The byte at `i`, words read little endian (the order they were read in).
    fn byte(&self, i: usize) -> Option<u8> {
        match self {
            Data::Bytes(b) => b.get(i).copied(),
            Data::Words(w) => w.get(i / 2).map(|v| v.to_le_bytes()[i % 2]),
            Data::SignedWords(w) => w.get(i / 2).map(|v| v.to_le_bytes()[i % 2]),
        }
    }

    /// Sample `i` in `format`.
    fn sample(&self, i: usize, format: Format) -> Option<f64> {
        match (self, format) {
            (Data::Words(w), Format::Signed16) => w.get(i).map(|v| f64::from(*v as i16)),
            (Data::Words(w), Format::Unsigned16) => w.get(i).map(|v| f64::from(*v)),
            (Data::SignedWords(w), Format::Signed16) => w.get(i).map(|v| f64::from(*v)),
            (Data::SignedWords(w), Format::Unsigned16) => w.get(i).map(|v| f64::from(*v as u16)),
            (_, Format::Signed16 | Format::Unsigned16) => {
                let pair = [self.byte(2 * i)?, self.byte(2 * i + 1)?];
                Some(match format {
                    Format::Signed16 => f64::from(i16::from_le_bytes(pair)),
                    _ => f64::from(u16::from_le_bytes(pair)),
                })
            }
            (_, Format::Signed8) => self.byte(i).map(|b| f64::from(b as i8)),
            (_, Format::Unsigned8) => self.byte(i).map(f64::from),
        }
    }
}

/// One channel's definition: label and the linear map of its samples onto millivolts.
struct Channel {
    label: String,
    /// Millivolts per unit of sample value.
    scale: f64,
    /// Millivolts at sample value 0.
    offset: f64,
}

fn read_group(group: &InMemDicomObject) -> Result<Ecg, WaveformError> {
    let channels: usize = number(group, tags::NUMBER_OF_WAVEFORM_CHANNELS)
        .ok_or_else(|| malformed("Number of Waveform Channels (003A,0005) is missing"))?;
    let samples: usize = number(group, tags::NUMBER_OF_WAVEFORM_SAMPLES)
        .ok_or_else(|| malformed("Number of Waveform Samples (003A,0010) is missing"))?;
    if channels == 0 || samples == 0 {
        return Err(malformed(format!(
            "it declares {channels} channel(s) of {samples} sample(s)"
        )));
    }
    if channels > MAX_CHANNELS {
        return Err(WaveformError::TooLarge(format!(
            "{channels} channels, where the viewer draws at most {MAX_CHANNELS}"
        )));
    }
    let rate = group
        .get(tags::SAMPLING_FREQUENCY)
        .and_then(|e| e.to_float64().ok())
        .ok_or_else(|| malformed("Sampling Frequency (003A,001A) is missing"))?;
    if !rate.is_finite() || rate < 1.0 {
        return Err(malformed(format!("a sampling frequency of {rate} Hz")));
    }
    if rate > MAX_RATE {
        return Err(WaveformError::TooLarge(format!(
            "{rate} samples a second, where the viewer draws at most {MAX_RATE}"
        )));
    }
    let bits: u16 = number(group, tags::WAVEFORM_BITS_ALLOCATED)
        .ok_or_else(|| malformed("Waveform Bits Allocated (5400,1004) is missing"))?;
    let interpretation = text(group, tags::WAVEFORM_SAMPLE_INTERPRETATION);
    let format = match (bits, interpretation.as_str()) {
        (16, "SS") => Format::Signed16,
        (16, "US") => Format::Unsigned16,
        (8, "SB") => Format::Signed8,
        (8, "UB") => Format::Unsigned8,
        (bits, other) => {
            return Err(malformed(format!(
                "samples of {bits} bits interpreted as '{other}'; the viewer draws 16-bit SS or \
                 US and 8-bit SB or UB samples"
            )))
        }
    };
    let definitions = group
        .get(tags::CHANNEL_DEFINITION_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or_default();
    if definitions.len() != channels {
        return Err(malformed(format!(
            "the Channel Definition Sequence (003A,0200) has {} item(s) for {channels} channels",
            definitions.len()
        )));
    }
    let data = match group
        .get(tags::WAVEFORM_DATA)
        .and_then(|e| e.value().primitive())
    {
        Some(PrimitiveValue::U8(b)) => Data::Bytes(b),
        Some(PrimitiveValue::U16(w)) => Data::Words(w),
        Some(PrimitiveValue::I16(w)) => Data::SignedWords(w),
        Some(_) => return Err(malformed("Waveform Data (5400,1010) is not OB or OW")),
        None => return Err(malformed("Waveform Data (5400,1010) is missing")),
    };
    // Channels interleaved, sample by sample (PS3.3 §C.10.9.1.7); an odd length is padded.
    let needed = channels
        .checked_mul(samples)
        .and_then(|n| n.checked_mul(format.bytes()))
        .ok_or_else(|| malformed("the channel and sample counts overflow"))?;
    let held = data.len_bytes();
    if held != needed && held != needed + 1 {
        return Err(malformed(format!(
            "Waveform Data holds {held} bytes where {channels} channels of {samples} samples \
             need {needed}"
        )));
    }
    let defined: Vec<Channel> = definitions
        .iter()
        .enumerate()
        .map(|(n, d)| channel(n, d))
        .collect::<Result<_, _>>()?;
    // The twelve standard leads, if each is there; otherwise the first channels as they are.
    let standard: Option<Vec<usize>> = TWELVE_LEADS
        .iter()
        .map(|name| defined.iter().position(|c| c.label == *name))
        .collect();
    let (picked, is_standard) = match standard {
        Some(picked) => (picked, true),
        None => ((0..channels.min(MAX_DRAWN)).collect(), false),
    };
    // At most MAX_SECONDS of each; `rate` is at most MAX_RATE, so this is bounded.
    let drawn = samples.min((rate * MAX_SECONDS).ceil() as usize);
    let mut leads = Vec::with_capacity(picked.len());
    for &c in &picked {
        let def = &defined[c];
        let mut millivolts = Vec::with_capacity(drawn);
        for s in 0..drawn {
            let raw = data
                .sample(s * channels + c, format)
                .ok_or_else(|| malformed("Waveform Data ends early"))?;
            let mv = raw * def.scale + def.offset;
            if !mv.is_finite() {
                return Err(malformed(format!(
                    "channel {} scales to a value that is not a number",
                    def.label
                )));
            }
            millivolts.push(mv as f32);
        }
        leads.push(Lead {
            label: def.label.clone(),
            millivolts,
        });
    }
    Ok(Ecg {
        rate,
        leads,
        standard: is_standard,
        left_out: channels - picked.len(),
    })
}

/// Channel `n`'s label and scale (PS3.3 §C.10.9.1.4.3: a sample is worth Channel Sensitivity
/// × Channel Sensitivity Correction Factor units, offset by Channel Baseline units).
fn channel(n: usize, def: &InMemDicomObject) -> Result<Channel, WaveformError> {
    let source = def
        .get(tags::CHANNEL_SOURCE_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.first())
        .map(|item| text(item, tags::CODE_MEANING))
        .unwrap_or_default();
    let label = Some(source)
        .filter(|s| !s.is_empty())
        .or_else(|| Some(text(def, tags::CHANNEL_LABEL)).filter(|s| !s.is_empty()))
        .map(|s| lead_name(&s))
        .unwrap_or_else(|| format!("{}", n + 1));
    let float = |tag| def.get(tag).and_then(|e| e.to_float64().ok());
    let sensitivity = float(tags::CHANNEL_SENSITIVITY).ok_or_else(|| {
        malformed(format!(
            "channel {label} has no Channel Sensitivity (003A,0210): its samples have no scale"
        ))
    })?;
    let correction = float(tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR).unwrap_or(1.0);
    let baseline = float(tags::CHANNEL_BASELINE).unwrap_or(0.0);
    let unit = def
        .get(tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.first())
        .map(|item| text(item, tags::CODE_VALUE))
        .unwrap_or_default();
    // UCUM codes (PS3.16 CID 3082).
    let to_mv = match unit.as_str() {
        "uV" => 0.001,
        "mV" => 1.0,
        "V" => 1000.0,
        "" => {
            return Err(malformed(format!(
                "channel {label} has no Channel Sensitivity Units Sequence (003A,0211)"
            )))
        }
        other => {
            return Err(malformed(format!(
                "channel {label} is in '{}', not in volts",
                truncated(other, 16)
            )))
        }
    };
    let scale = sensitivity * correction * to_mv;
    let offset = baseline * to_mv;
    if !scale.is_finite() || scale == 0.0 || !offset.is_finite() {
        return Err(malformed(format!(
            "channel {label} has a sensitivity of {sensitivity} × {correction} and a baseline \
             of {baseline}"
        )));
    }
    Ok(Channel {
        label,
        scale,
        offset,
    })
}

/// A lead's name out of a code meaning ("Lead I (Einthoven)" → "I", "lead avr" → "aVR").
fn lead_name(meaning: &str) -> String {
    let m = meaning.trim();
    let m = match m.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("lead ") => &m[5..],
        _ => m,
    };
    let m = m.split(" (").next().unwrap_or(m).trim();
    TWELVE_LEADS
        .iter()
        .find(|name| name.eq_ignore_ascii_case(m))
        .map_or_else(|| truncated(m, 24), |name| (*name).to_owned())
}

fn truncated(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

fn text(obj: &InMemDicomObject, tag: dicom_object::Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(['\0', ' ']).to_owned())
        .unwrap_or_default()
}

fn number<T: TryFrom<i64>>(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Option<T> {
    let v: i64 = obj.get(tag)?.to_int().ok()?;
    T::try_from(v).ok()
}

/// XML text with its five special characters escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Where one stretch of a lead goes on the paper.
struct Strip {
    lead: usize,
    /// From and to, in seconds from the start.
    from: f64,
    to: f64,
    /// Left end and baseline, in mm.
    x: f64,
    y: f64,
}

/// Width of one thinning bucket on the paper, in mm: at most two points each.
const BUCKET_MM: f64 = 0.2;

/// Draws `ecg` on ECG paper as an SVG document whose user unit is the millimetre.
pub fn svg(ecg: &Ecg, paper: Paper) -> String {
    let gain = f64::from(paper.gain);
    let speed = f64::from(paper.speed);
    let row = 4.0 * gain;
    let pulse = 0.2 * speed;
    let left = round5(pulse + 6.0);
    let top = 5.0;
    let mut strips = Vec::new();
    let rows = if ecg.standard {
        for (r, leads) in GRID.iter().enumerate() {
            for (c, &lead) in leads.iter().enumerate() {
                let from = c as f64 * COLUMN_SECONDS;
                strips.push(Strip {
                    lead,
                    from,
                    to: from + COLUMN_SECONDS,
                    x: left + from * speed,
                    y: top + (r as f64 + 0.5) * row,
                });
            }
        }
        // The rhythm strip: lead II, the whole record.
        strips.push(Strip {
            lead: 1,
            from: 0.0,
            to: MAX_SECONDS,
            x: left,
            y: top + 3.5 * row,
        });
        4
    } else {
        for lead in 0..ecg.leads.len() {
            strips.push(Strip {
                lead,
                from: 0.0,
                to: MAX_SECONDS,
                x: left,
                y: top + (lead as f64 + 0.5) * row,
            });
        }
        ecg.leads.len()
    };
    let width = round5(left + MAX_SECONDS * speed + 5.0);
    let height = round5(top + rows as f64 * row + 10.0);
    let mut out = String::with_capacity(64 * 1024);
    // Writing to a String cannot fail; the results are ignored below for that reason.
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="ecg" width="{width}mm" height="{height}mm" viewBox="0 0 {width} {height}" data-gain="{gain}" data-speed="{speed}" data-leads="{leads}" font-family="sans-serif"><defs><pattern id="mm" width="1" height="1" patternUnits="userSpaceOnUse"><path d="M1 0V1H0" fill="none" stroke="#f4c4c4" stroke-width="0.08"/></pattern><pattern id="mm5" width="5" height="5" patternUnits="userSpaceOnUse"><rect width="5" height="5" fill="url(#mm)"/><path d="M5 0V5H0" fill="none" stroke="#e08080" stroke-width="0.2"/></pattern></defs><rect class="paper" width="{width}" height="{height}" fill="#fff8f6"/><rect width="{width}" height="{height}" fill="url(#mm5)"/>"##,
        leads = ecg.leads.len(),
    );
    // A 1 mV, 0.2 s calibration pulse at the start of every row.
    for r in 0..rows {
        let y = top + (r as f64 + 0.5) * row;
        let _ = write!(
            out,
            r##"<path class="cal" d="M2 {y:.2}h{a:.2}v-{gain}h{pulse:.2}v{gain}h{a:.2}" fill="none" stroke="#000" stroke-width="0.3"/>"##,
            a = (left - 4.0 - pulse) / 2.0,
        );
    }
    for (n, strip) in strips.iter().enumerate() {
        let Some(lead) = ecg.leads.get(strip.lead) else {
            continue;
        };
        let rhythm = ecg.standard && n == strips.len() - 1;
        // The boundary between columns, as on printed 12-lead reports.
        if strip.from > 0.0 {
            let _ = write!(
                out,
                r##"<path d="M{:.2} {:.2}v6" stroke="#000" stroke-width="0.3"/>"##,
                strip.x,
                strip.y - 3.0
            );
        }
        let _ = write!(
            out,
            r##"<text class="lead" x="{:.2}" y="{:.2}" font-size="3.5">{}</text>"##,
            strip.x + 1.0,
            strip.y - row * 0.3,
            escape(&lead.label)
        );
        let _ = write!(
            out,
            r##"<polyline class="trace" data-lead="{}"{} fill="none" stroke="#000" stroke-width="0.25" stroke-linejoin="round" points=""##,
            escape(&lead.label),
            if rhythm { r#" data-rhythm="""# } else { "" },
        );
        trace(&mut out, lead, ecg.rate, strip, gain, speed);
        out.push_str(r#""/>"#);
    }
    let _ = write!(
        out,
        r##"<text class="scale" x="{left}" y="{:.2}" font-size="3">{speed} mm/s · {gain} mm/mV · {} Hz{}</text></svg>"##,
        height - 3.0,
        ecg.rate,
        if ecg.left_out > 0 {
            format!(" · +{} channel(s) not shown", ecg.left_out)
        } else {
            String::new()
        },
    );
    out
}

/// The points of one strip, thinned to the lowest and highest sample of each
/// [`BUCKET_MM`] of paper, in the order they occur.
fn trace(out: &mut String, lead: &Lead, rate: f64, strip: &Strip, gain: f64, speed: f64) {
    let first = (strip.from * rate).floor() as usize;
    let end = ((strip.to * rate).ceil() as usize).min(lead.millivolts.len());
    let Some(samples) = lead.millivolts.get(first..end) else {
        return;
    };
    let per_bucket = ((rate / speed * BUCKET_MM).floor() as usize).max(1);
    let mut point = |i: usize, mv: f32| {
        let x = strip.x + (i as f64) / rate * speed;
        let y = strip.y - f64::from(mv) * gain;
        let _ = write!(out, "{x:.2},{y:.2} ");
    };
    for (b, bucket) in samples.chunks(per_bucket).enumerate() {
        let start = b * per_bucket;
        if bucket.len() <= 2 {
            for (k, mv) in bucket.iter().enumerate() {
                point(start + k, *mv);
            }
            continue;
        }
        let (mut lo, mut hi) = (0, 0);
        for (k, mv) in bucket.iter().enumerate() {
            if *mv < bucket[lo] {
                lo = k;
            }
            if *mv > bucket[hi] {
                hi = k;
            }
        }
        for k in [lo.min(hi), lo.max(hi)] {
            point(start + k, bucket[k]);
        }
    }
}

fn round5(mm: f64) -> f64 {
    (mm / 5.0).ceil() * 5.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, VR};

    fn put(obj: &mut InMemDicomObject, tag: dicom_object::Tag, vr: VR, v: PrimitiveValue) {
        obj.put(DataElement::new(tag, vr, v));
    }

    /// A waveform object of `names` channels, `samples` each, 16-bit signed in µV (one unit
    /// each), whose data is `data` (interleaved).
    fn ecg_object(names: &[&str], samples: u32, data: Vec<i16>) -> InMemDicomObject {
        let channels: Vec<InMemDicomObject> = names
            .iter()
            .map(|name| {
                let mut source = InMemDicomObject::new_empty();
                put(
                    &mut source,
                    tags::CODE_MEANING,
                    VR::LO,
                    format!("Lead {name}").into(),
                );
                let mut units = InMemDicomObject::new_empty();
                put(&mut units, tags::CODE_VALUE, VR::SH, "uV".into());
                let mut ch = InMemDicomObject::new_empty();
                ch.put(DataElement::new(
                    tags::CHANNEL_SOURCE_SEQUENCE,
                    VR::SQ,
                    DataSetSequence::from(vec![source]),
                ));
                ch.put(DataElement::new(
                    tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE,
                    VR::SQ,
                    DataSetSequence::from(vec![units]),
                ));
                put(&mut ch, tags::CHANNEL_SENSITIVITY, VR::DS, "1".into());
                ch
            })
            .collect();
        let mut group = InMemDicomObject::new_empty();
        put(
            &mut group,
            tags::NUMBER_OF_WAVEFORM_CHANNELS,
            VR::US,
            PrimitiveValue::from(names.len() as u16),
        );
        put(
            &mut group,
            tags::NUMBER_OF_WAVEFORM_SAMPLES,
            VR::UL,
            PrimitiveValue::from(samples),
        );
        put(&mut group, tags::SAMPLING_FREQUENCY, VR::DS, "500".into());
        put(
            &mut group,
            tags::WAVEFORM_BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(16u16),
        );
        put(
            &mut group,
            tags::WAVEFORM_SAMPLE_INTERPRETATION,
            VR::CS,
            "SS".into(),
        );
        group.put(DataElement::new(
            tags::CHANNEL_DEFINITION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(channels),
        ));
        put(
            &mut group,
            tags::WAVEFORM_DATA,
            VR::OW,
            PrimitiveValue::I16(data.into()),
        );
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::WAVEFORM_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![group]),
        ));
        obj
    }

    /// Twelve leads of 10 s at 500 Hz: lead k a square wave of (k + 1) × 100 µV.
    fn twelve() -> InMemDicomObject {
        let samples = 5000usize;
        let mut data = Vec::with_capacity(samples * 12);
        for s in 0..samples {
            for k in 0..12i16 {
                let on = (s / 250) % 2 == 1;
                data.push(if on { (k + 1) * 100 } else { 0 });
            }
        }
        ecg_object(&TWELVE_LEADS, samples as u32, data)
    }

    /// The y coordinates of the trace of `lead` (the first one, not the rhythm strip).
    fn ys(svg: &str, lead: &str) -> Vec<f64> {
        let at = svg
            .find(&format!(r#"data-lead="{lead}" fill"#))
            .unwrap_or_else(|| panic!("no trace of {lead}"));
        let points = &svg[at..];
        let points = &points[points.find("points=\"").unwrap() + 8..];
        let points = &points[..points.find('"').unwrap()];
        points
            .split_whitespace()
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect()
    }

    fn spread(v: &[f64]) -> f64 {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(*y), hi.max(*y)));
        hi - lo
    }

    #[test]
    fn twelve_leads_are_laid_out_with_their_labels_and_a_rhythm_strip() {
        let ecg = read(&twelve()).unwrap();
        assert!(ecg.standard);
        assert_eq!(ecg.leads.len(), 12);
        let svg = svg(&ecg, Paper::default());
        for name in TWELVE_LEADS {
            assert!(svg.contains(&format!(">{name}</text>")), "{name}");
        }
        assert_eq!(svg.matches(r#"class="lead""#).count(), 13);
        assert_eq!(svg.matches(r#"class="trace""#).count(), 13);
        assert_eq!(svg.matches("data-rhythm").count(), 1);
        assert_eq!(svg.matches(r#"class="cal""#).count(), 4);
        // 4 columns of 2.5 s at 25 mm/s and the margin for the calibration pulse.
        assert!(svg.contains(r#"width="270mm""#), "{}", &svg[..200]);
        // Lead III is 300 µV: 3 mm at 10 mm/mV.
        assert!((spread(&ys(&svg, "III")) - 3.0).abs() < 0.01);
    }

    #[test]
    fn the_trace_and_the_calibration_pulse_follow_the_gain() {
        let ecg = read(&twelve()).unwrap();
        for gain in Paper::GAINS {
            let svg = svg(&ecg, Paper::new(Some(gain), None));
            assert!(svg.contains(&format!("v-{gain}h")), "calibration at {gain}");
            let v6 = spread(&ys(&svg, "V6")); // 1.2 mV
            assert!((v6 - 1.2 * f64::from(gain)).abs() < 0.01, "{gain}: {v6}");
        }
        // A gain or speed not offered is the standard one.
        assert_eq!(Paper::new(Some(7), Some(1000)), Paper::default());
        let fast = svg(&ecg, Paper::new(None, Some(50)));
        assert!(fast.contains(r#"width="525mm""#));
    }

    #[test]
    fn long_records_are_thinned_and_cut_at_ten_seconds() {
        // 60 s at 500 Hz of noise-like data: drawn, bounded.
        let samples = 30_000usize;
        let data: Vec<i16> = (0..samples * 12)
            .map(|i| ((i * 7919) % 2001) as i16 - 1000)
            .collect();
        let obj = ecg_object(&TWELVE_LEADS, samples as u32, data);
        let ecg = read(&obj).unwrap();
        assert!(ecg.leads.iter().all(|l| l.millivolts.len() == 5000));
        let svg = svg(&ecg, Paper::default());
        assert!(svg.len() < 400_000, "{} bytes", svg.len());
    }

    #[test]
    fn other_channels_are_drawn_one_per_row_up_to_a_bound() {
        let names: Vec<String> = (0..20).map(|n| format!("C{n}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let obj = ecg_object(&names, 100, vec![5; 2000]);
        let ecg = read(&obj).unwrap();
        assert!(!ecg.standard);
        assert_eq!((ecg.leads.len(), ecg.left_out), (MAX_DRAWN, 4));
        let svg = svg(&ecg, Paper::default());
        assert_eq!(svg.matches(r#"class="trace""#).count(), MAX_DRAWN);
        assert!(svg.contains("+4 channel(s) not shown"));
    }

    #[test]
    fn malformed_and_hostile_waveforms_are_errors() {
        let cases: Vec<(InMemDicomObject, &str)> = vec![
            (InMemDicomObject::new_empty(), "no Waveform Sequence"),
            // Fewer samples than declared.
            (ecg_object(&TWELVE_LEADS, 5000, vec![0; 100]), "need 120000"),
            // A huge channel count over a little data.
            (
                {
                    let mut o = ecg_object(&["I"], 10, vec![0; 10]);
                    let groups = o.get(tags::WAVEFORM_SEQUENCE).unwrap().items().unwrap();
                    let mut g = groups[0].clone();
                    put(
                        &mut g,
                        tags::NUMBER_OF_WAVEFORM_CHANNELS,
                        VR::US,
                        PrimitiveValue::from(65_535u16),
                    );
                    o.put(DataElement::new(
                        tags::WAVEFORM_SEQUENCE,
                        VR::SQ,
                        DataSetSequence::from(vec![g]),
                    ));
                    o
                },
                "at most 64",
            ),
            // Channel definitions that do not match the count.
            (ecg_object(&["I", "II"], 0, vec![]), "0 sample"),
        ];
        for (obj, expected) in cases {
            let e = read(&obj).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
        let mut o = ecg_object(&["I", "II"], 4, vec![0; 8]);
        let groups = o.get(tags::WAVEFORM_SEQUENCE).unwrap().items().unwrap();
        let mut g = groups[0].clone();
        put(
            &mut g,
            tags::NUMBER_OF_WAVEFORM_CHANNELS,
            VR::US,
            PrimitiveValue::from(3u16),
        );
        put(&mut g, tags::SAMPLING_FREQUENCY, VR::DS, "NaN".into());
        o.put(DataElement::new(
            tags::WAVEFORM_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![g.clone()]),
        ));
        assert!(read(&o).is_err());
        put(&mut g, tags::SAMPLING_FREQUENCY, VR::DS, "500".into());
        o.put(DataElement::new(
            tags::WAVEFORM_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![g.clone()]),
        ));
        let e = read(&o).unwrap_err().to_string();
        assert!(e.contains("2 item(s) for 3 channels"), "{e}");
        put(
            &mut g,
            tags::WAVEFORM_SAMPLE_INTERPRETATION,
            VR::CS,
            "MB".into(),
        );
        o.put(DataElement::new(
            tags::WAVEFORM_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![g]),
        ));
        let e = read(&o).unwrap_err().to_string();
        assert!(e.contains("'MB'"), "{e}");
    }

    #[test]
    fn lead_names_are_read_from_code_meanings() {
        assert_eq!(lead_name("Lead I (Einthoven)"), "I");
        assert_eq!(lead_name("lead avr"), "aVR");
        assert_eq!(lead_name("V6"), "V6");
        assert_eq!(lead_name("Lead"), "Lead");
        assert_eq!(
            lead_name("Pulmonary artery pressure"),
            "Pulmonary artery pressur"
        );
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
