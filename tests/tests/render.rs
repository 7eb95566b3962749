//! The viewer's renderer on real files: pydicom's samples in the transfer syntaxes the issue
//! names (uncompressed, RLE, JPEG baseline, JPEG 2000) and a synthetic CT, each decoded to a
//! PNG of the image's own size whose pixels are not all alike; bad frame numbers and windows
//! get an error or the image's own window, never a panic.
#![allow(clippy::unwrap_used)]

use gateway::render;

/// (width, height, spread of the first channel's values) of a PNG.
fn look(png_bytes: &[u8]) -> (u32, u32, u8) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let values = buf[..info.buffer_size()].iter().step_by(step);
    let (lo, hi) = values.fold((255u8, 0u8), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    (info.width, info.height, hi.saturating_sub(lo))
}

#[test]
fn every_transfer_syntax_the_viewer_promises_renders_to_a_real_image() {
    let dir = harness::samples::pydicom_test_files().unwrap();
    for (name, size) in [
        ("CT_small.dcm", (128, 128)),   // explicit VR little endian, 16-bit
        ("MR_small_RLE.dcm", (64, 64)), // RLE lossless
        ("SC_rgb_jpeg_dcmtk.dcm", (100, 100)), // JPEG baseline, colour
        ("JPEG2000.dcm", (256, 1024)),  // JPEG 2000 (width × height)
    ] {
        let path = dir.join(name);
        let info = render::info(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(info.frames >= 1 && info.window.1 >= 1.0, "{name}: {info:?}");
        let (w, h, spread) = look(&render::png(&path, 0, None).unwrap());
        assert_eq!((w, h), size, "{name}");
        assert!(spread > 30, "{name} rendered almost flat (spread {spread})");
    }
}

#[test]
fn windows_and_frames_from_the_address_bar_cannot_break_a_render() {
    let dir = tempfile::tempdir().unwrap();
    let study = harness::samples::write_ct_series(dir.path(), "P-1", 1, 64 * 64 * 2, 7).unwrap();
    let path = &study.files[0];
    let own = render::png(path, 0, None).unwrap();
    // A NaN or infinite window is ignored: the image's own window is used.
    assert_eq!(render::png(path, 0, Some((f64::NAN, 400.0))).unwrap(), own);
    assert_eq!(
        render::png(path, 0, Some((40.0, f64::INFINITY))).unwrap(),
        own
    );
    // A narrow window changes the picture.
    assert_ne!(render::png(path, 0, Some((0.0, 10.0))).unwrap(), own);
    let e = render::png(path, 5, None).unwrap_err().to_string();
    assert!(e.contains("frame 5 does not exist"), "{e}");
    let e = render::png(&dir.path().join("missing.dcm"), 0, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read"), "{e}");
}

/// Files dicom-rs mis-reads into gigabytes of allocation — pydicom's valid `UN_sequence.dcm`
/// and a crafted file with a UN element of undefined length — are refused by the viewer and
/// the PACS re-encoder within 5 s, in a process limited to 1 GiB of address space, and in one
/// allowed 8 GiB (where dicom-rs 0.10's re-encoder, handed `UN_sequence.dcm`, grew to 3.6 GB
/// and ran past two minutes); in this process too, which then renders on as before.
#[test]
fn files_the_dicom_reader_mis_reads_are_refused_within_bounds_and_rendering_goes_on() {
    let samples = harness::samples::pydicom_test_files().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let crafted = dir.path().join("un-undefined.dcm");
    harness::samples::write_undefined_length_un(&crafted).unwrap();
    let probe = env!("CARGO_BIN_EXE_render-probe");
    let files = [samples.join("UN_sequence.dcm"), crafted];
    for (file, kib) in files.iter().flat_map(|f| [(f, 1 << 20), (f, 8 << 20)]) {
        let started = std::time::Instant::now();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v {kib} && exec timeout 10 \"$0\" \"$1\""))
            .arg(probe)
            .arg(file)
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: the probe died ({:?}): {said}{}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            elapsed.as_secs_f64() < 5.0,
            "{}: {elapsed:?}",
            file.display()
        );
        for what in ["info", "png", "reencode"] {
            let line = said
                .lines()
                .find(|l| l.starts_with(&format!("{what}:")))
                .unwrap_or_default();
            assert!(
                line.contains("error") && line.contains("unknown VR"),
                "{}: {what} must be refused and say why: {said}",
                file.display()
            );
        }
        let refused = render::png(file, 0, None).unwrap_err();
        assert!(refused.to_string().contains("PACS viewer"), "{refused}");
    }
    render::png(&samples.join("CT_small.dcm"), 0, None).expect("rendering goes on");
}

/// The lead labels of a drawn ECG, in the order drawn.
fn lead_labels(svg: &str) -> Vec<String> {
    svg.split(r#"<text class="lead""#)
        .skip(1)
        .map(|t| {
            let t = &t[t.find('>').unwrap() + 1..];
            t[..t.find('<').unwrap()].to_owned()
        })
        .collect()
}

/// The vertical extent, in mm, of the first trace of `lead`.
fn trace_height(svg: &str, lead: &str) -> f64 {
    let at = svg.find(&format!(r#"data-lead="{lead}""#)).unwrap();
    let rest = &svg[at..];
    let rest = &rest[rest.find("points=\"").unwrap() + 8..];
    let ys: Vec<f64> = rest[..rest.find('"').unwrap()]
        .split_whitespace()
        .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let lo = ys.iter().copied().fold(f64::MAX, f64::min);
    let hi = ys.iter().copied().fold(f64::MIN, f64::max);
    hi - lo
}

#[test]
fn pydicoms_and_the_pilots_12_lead_ecgs_are_drawn_with_every_lead_on_ecg_paper() {
    use daemon::waveform::{svg_file, Paper, TWELVE_LEADS};
    let dir = tempfile::tempdir().unwrap();
    let patient = harness::samples::DemoPatient {
        id: "P-ECG".into(),
        name: "TEST^ECG".into(),
        sex: "O".into(),
        birth_date: "19700101".into(),
    };
    let pilot = harness::samples::demo_ecg(dir.path(), &patient).unwrap();
    let pydicom = harness::samples::pydicom_test_files()
        .unwrap()
        .join("waveform_ecg.dcm");
    for path in [&pydicom, &pilot.files[0]] {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let svg = svg_file(path, Paper::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{name}");
        let labels = lead_labels(&svg);
        // Twelve leads in the 3 × 4 grid, then lead II's rhythm strip.
        assert_eq!(labels.len(), 13, "{name}: {labels:?}");
        for lead in TWELVE_LEADS {
            assert!(labels.iter().any(|l| l == lead), "{name} lacks lead {lead}");
        }
        assert_eq!(labels[12], "II", "{name}: the rhythm strip");
        for trace in svg.split(r#"class="trace""#).skip(1) {
            let points = trace.split("points=\"").nth(1).unwrap();
            let count = points[..points.find('"').unwrap()]
                .split_whitespace()
                .count();
            assert!(count > 100, "{name}: a trace of {count} points");
        }
        // Twice the gain, twice the height; the paper is as wide at either gain.
        let at10 = trace_height(&svg, "II");
        let twenty = svg_file(path, Paper::new(Some(20), None)).unwrap();
        let at20 = trace_height(&twenty, "II");
        assert!(at10 > 3.0, "{name}: lead II spans {at10} mm at 10 mm/mV");
        assert!((at20 / at10 - 2.0).abs() < 0.05, "{name}: {at10} → {at20}");
        assert!(twenty.contains(r#"width="270mm""#), "{name}");
    }
    // The pilot's ECG: R waves of about 1.1 mV × 1.2 in lead II, so about 13 mm at 10 mm/mV.
    let svg = svg_file(&pilot.files[0], Paper::default()).unwrap();
    let h = trace_height(&svg, "II");
    assert!((10.0..18.0).contains(&h), "lead II spans {h} mm");
}

#[test]
fn an_image_is_not_drawn_as_a_waveform_nor_a_waveform_as_an_image() {
    let pydicom = harness::samples::pydicom_test_files().unwrap();
    let e = daemon::waveform::svg_file(&pydicom.join("CT_small.dcm"), Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no Waveform Sequence"), "{e}");
    assert!(render::info(&pydicom.join("waveform_ecg.dcm")).is_err());
}
