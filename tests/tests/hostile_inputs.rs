//! Every fuzz target's seed corpus and every crash the fuzzer found, replayed through the
//! target's body (`harness::hostile`), so CI checks them on each run without a fuzzer. A
//! crash found by `scripts/fuzz` goes into `fuzz/regressions/<target>/` with the fix.

use std::path::{Path, PathBuf};

use harness::hostile;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir` (none if it does not exist), hidden ones left out.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs `target`'s body over its corpus (which must not be empty) and its regressions.
fn replay(target: &str) {
    let body = hostile::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .unwrap_or_else(|| panic!("{target} is not in hostile::TARGETS"));
    let corpus = inputs(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ holds no seeds; write them with \
         `cargo test -p tpg-tests --test hostile_inputs -- --ignored write_seed_corpora`"
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("a corpus file is readable");
        eprintln!("{target}: {}", path.display());
        body(&data);
    }
}

#[test]
fn control_frames_from_a_peer_never_panic() {
    replay("control_frames");
}

#[test]
fn object_stream_blocks_never_panic() {
    replay("block_header");
}

#[test]
fn the_dicom_walk_never_panics() {
    replay("dicom_walk");
}

#[test]
fn dimse_command_sets_and_pdus_never_panic() {
    replay("dimse");
}

#[test]
fn the_render_path_never_panics() {
    replay("render");
}

#[test]
fn replicated_consultation_events_never_panic() {
    replay("replicated_events");
}

#[test]
fn uploads_forms_and_headers_never_panic() {
    replay("multipart_and_forms");
}

#[test]
fn dicomweb_and_fhir_requests_and_stored_instances_never_panic() {
    replay("dicomweb");
}

#[test]
fn configuration_files_never_panic() {
    replay("configs");
}

#[test]
fn crls_never_panic() {
    replay("crl");
}

#[test]
fn every_target_is_replayed_here_and_has_a_fuzz_binary() {
    let source = include_str!("hostile_inputs.rs");
    for (target, _) in hostile::TARGETS {
        assert!(
            source.contains(&format!("replay(\"{target}\")")),
            "{target} has no replay test"
        );
        let bin = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(bin.is_file(), "{} is missing", bin.display());
    }
}

/// pydicom's test files of at most this size seed the DICOM targets: small files mutate
/// quickly, and the corpus stays small in git.
const SMALL_DICOM: u64 = 12 * 1024;

/// Writes the seed corpora: the inputs `hostile::seeds` makes, pydicom's small test files for
/// the DICOM walk, the render path and WADO-RS, three synthetic files of the harness (one with
/// a sequence of unknown VR, a short 12-lead ECG), and a STOW-RS request of one of them whole
/// and cut short. Run it by hand after changing the seeds, then commit the files.
#[test]
#[ignore = "writes fuzz/corpus/; run by hand"]
fn write_seed_corpora() -> anyhow::Result<()> {
    let corpus = fuzz_dir().join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        Ok(())
    };
    for (target, name, bytes) in hostile::seeds()? {
        write(target, &name, &bytes)?;
    }
    let pydicom = harness::samples::pydicom_test_files()?;
    let mut dicom: Vec<PathBuf> = inputs(&pydicom)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() <= SMALL_DICOM))
        .collect();
    let synthetic = tempfile::tempdir()?;
    let un = synthetic.path().join("tpg-undefined-length-un.dcm");
    harness::samples::write_undefined_length_un(&un)?;
    dicom.push(un);
    let patient = harness::samples::DemoPatient {
        id: "FUZZ-1".into(),
        name: "FUZZ^SEED".into(),
        sex: "O".into(),
        birth_date: "19700101".into(),
    };
    for file in harness::samples::ecg(synthetic.path(), &patient, 250, 1)?.files {
        let named = synthetic.path().join("tpg-ecg-12-lead.dcm");
        std::fs::rename(file, &named)?;
        dicom.push(named);
    }
    for file in harness::samples::write_small_instances(synthetic.path(), 1)? {
        let named = synthetic.path().join("tpg-small-instance.dcm");
        std::fs::rename(file, &named)?;
        dicom.push(named);
    }
    for file in &dicom {
        let bytes = std::fs::read(file)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write("dicom_walk", &name, &bytes)?;
        write("render", &name, &bytes)?;
        write(
            "dicomweb",
            &format!("wado-{name}"),
            &[b"2".as_slice(), &bytes].concat(),
        )?;
    }
    // A STOW-RS request of two parts: a whole instance, and the same cut short.
    let small = std::fs::read(synthetic.path().join("tpg-small-instance.dcm"))?;
    let boundary = "tpg-stow-7d1f";
    let mut stow = format!("0multipart/related; type=\"application/dicom\"; boundary={boundary}\n")
        .into_bytes();
    for part in [&small[..], &small[..small.len() / 2]] {
        stow.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        stow.extend_from_slice(part);
        stow.extend_from_slice(b"\r\n");
    }
    stow.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    write("dicomweb", "stow-whole-and-cut", &stow)?;
    Ok(())
}
