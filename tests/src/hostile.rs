//! The bodies of the fuzz targets (`fuzz/fuzz_targets/`): every decoder that takes outside
//! input, fed arbitrary bytes the way the daemons feed it what a peer, a modality, a browser or
//! an administrator sends. Each body calls the decoder and ignores its errors; a panic, a hang
//! or an allocation past the fuzzer's limit is the bug (ARCHITECTURE.md: "nothing a peer or a
//! file sends can panic a process").
//!
//! The bodies are ordinary functions so that `tests/tests/hostile_inputs.rs` replays the seed
//! corpora and every crash found (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) in
//! `cargo test`, without a fuzzer. Decoders that read files get the bytes in a scratch file of
//! the calling thread, rewritten for each input. [`seeds`] writes the seed corpora that are
//! not copied from elsewhere.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use proto::consult::{canonical_order, ConsultationId, Event, Folded, Side};
use proto::frame::FrameDecoder;
use proto::sync::block::{Header, HEADER_LEN};
use proto::ControlFrame;

/// What one thread keeps between inputs: a scratch folder, and what the slower bodies set up
/// once (a sled database, a CA, a runtime). Dropped with the thread, which removes the folder.
struct Scratch {
    dir: tempfile::TempDir,
    db: Option<sled::Db>,
    /// A CA with a gateway certificate, for building the gateway's TLS configuration around
    /// a hostile CRL; `None` if it could not be made.
    pki: Option<Option<PathBuf>>,
    runtime: Option<tokio::runtime::Runtime>,
    config_dir: Option<PathBuf>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's scratch space, made on first use; `None` when no temporary
/// folder can be made (then the body does nothing: it is the machine, not the input).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> Option<R> {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("tpg-hostile-")
                .tempdir()
                .ok()?;
            *slot = Some(Scratch {
                dir,
                db: None,
                pki: None,
                runtime: None,
                config_dir: None,
            });
        }
        slot.as_mut().map(f)
    })
}

/// Writes `data` to this thread's scratch file `name` and returns its path.
fn scratch_file(scratch: &Scratch, name: &str, data: &[u8]) -> Option<PathBuf> {
    let path = scratch.dir.path().join(name);
    std::fs::write(&path, data).ok()?;
    Some(path)
}

/// Control frames as both daemons read them off the control and events streams
/// (`daemon::frames::ControlCodec` under `FramedRead`): the input arrives in pieces whose size
/// the first byte picks, and frames are cut until the codec needs more bytes or reports an
/// error, and once more at the end of the input. Every frame decoded must encode and decode
/// back to itself.
pub fn control_frames(data: &[u8]) {
    use tokio_util::codec::Decoder;
    let Some((&piece, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut codec = daemon::frames::ControlCodec;
    let mut buf = bytes::BytesMut::new();
    for chunk in rest.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => round_trip(&frame),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        round_trip(&frame);
    }
}

fn round_trip(frame: &ControlFrame) {
    let wire = frame.encode();
    if wire.len() > 4 + proto::frame::MAX_FRAME_LEN {
        // Escapes can make a frame's own encoding longer than what arrived; the sender of an
        // event checks the size before encoding (`store::consult::MAX_EVENT_BYTES`).
        return;
    }
    let mut again = FrameDecoder::default();
    again.push(&wire);
    assert_eq!(
        again.next_frame().ok().flatten().as_ref(),
        Some(frame),
        "a decoded control frame must encode and decode back to itself"
    );
}

/// An object stream as the gateway reads it (`gateway::receive`): with an odd first byte, the
/// `offer` frame first and the bytes after it; then compressed blocks, each a 9-byte header
/// checked before anything is allocated and a body decoded against it
/// (`daemon::compress::decode`).
pub fn block_header(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut stream = rest.to_vec();
    if mode % 2 == 1 {
        let mut decoder = FrameDecoder::default();
        decoder.push(rest);
        match decoder.next_frame() {
            Ok(Some(ControlFrame::Offer { .. })) => stream = decoder.take_remaining(),
            _ => return,
        }
    }
    let mut at = 0usize;
    while let Some(head) = stream.get(at..at + HEADER_LEN) {
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(head);
        let Ok(header) = Header::decode(&bytes) else {
            return;
        };
        at += HEADER_LEN;
        let end = at.saturating_add(header.wire_len as usize);
        let Some(body) = stream.get(at..end) else {
            return;
        };
        if daemon::compress::decode(&header, body.to_vec()).is_err() {
            return;
        }
        at = end;
    }
}

/// A DICOM file as the clinic's ingest and the gateway's index read it: the bounded
/// structural walk (`store::structure`) behind `store::dicom::summarize`.
pub fn dicom_walk(data: &[u8]) {
    with_scratch(|s| {
        if let Some(path) = scratch_file(s, "walk.dcm", data) {
            let _ = store::structure::scan(&path, &[]);
            let _ = store::dicom::summarize(&path);
        }
    });
}

/// The size of a PDU the clinic's SCP accepts (`clinic_agent::scp`).
const MAX_PDU: u32 = 256 * 1024;

/// DICOM networking as the clinic's SCP meets it: PDUs read by dicom-ul
/// (`dicom_ul::read_pdu`, strict about the size the SCP announces), command fragments of
/// P-DATA reassembled and parsed (`daemon::dimse::parse`), and the whole input parsed as one
/// command set too. Our answer to any command we parse must parse back.
pub fn dimse(data: &[u8]) {
    command_set(data);
    let mut buf = data;
    let mut command = Vec::new();
    while let Ok(Some(pdu)) = dicom_ul::read_pdu(&mut buf, MAX_PDU, true) {
        if let dicom_ul::Pdu::PData { data } = pdu {
            for pdv in data {
                if pdv.value_type == dicom_ul::pdu::PDataValueType::Command {
                    command.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        command_set(&std::mem::take(&mut command));
                    }
                }
            }
        }
    }
}

fn command_set(bytes: &[u8]) {
    use daemon::dimse;
    let Ok(command) = dimse::parse(bytes) else {
        return;
    };
    let field = if command.field == dimse::C_ECHO_RQ {
        dimse::C_ECHO_RSP
    } else {
        dimse::C_STORE_RSP
    };
    let response = dimse::response(&command, field, dimse::STATUS_SUCCESS);
    assert!(
        dimse::parse(&response).is_ok(),
        "our response to a parsed command must parse"
    );
    // The SCP writes a file header only for UIDs of at most 64 characters (PS3.5 §9.1).
    if command.sop_class.len() <= 64 && command.sop_instance.len() <= 64 {
        let _ = dimse::file_header(
            &command.sop_class,
            &command.sop_instance,
            "1.2.840.10008.1.2",
        );
    }
    let _ = dimse::status_text(command.status.unwrap_or(0));
}

/// The render path as the gateway's viewer, the clinic's preview sheets and the gateway's PACS
/// re-encoder take it (`daemon::render`, `gateway::forward::reencode`): the file walked and
/// refused when unsound, then opened by dicom-rs, a frame decoded within the bounds, windowed,
/// and encoded as PNG and as a preview sheet; and the whole instance decoded and written in
/// explicit VR little endian; and the file drawn as an ECG (`daemon::waveform`), as the viewer
/// draws a waveform instance.
pub fn render(data: &[u8]) {
    use daemon::render;
    let_guarded_panics_unwind();
    with_scratch(|s| {
        let Some(path) = scratch_file(s, "render.dcm", data) else {
            return;
        };
        if render::readable(&path).is_err() {
            return;
        }
        let paper = daemon::waveform::Paper::new(Some(20), Some(50));
        let _ = daemon::waveform::svg_file(&path, paper);
        let Ok(info) = render::info(&path) else {
            return;
        };
        let _ = render::png(&path, 0, None);
        // A window from the address bar may be anything.
        let _ = render::png(&path, info.frames - 1, Some((f64::NAN, -3.0)));
        let _ = render::preview_sheet(&[&path]);
        let _ = gateway::forward::reencode(&path, "1.2.840.10008.1.2.1", None);
    });
}

/// Under libFuzzer every panic aborts the process at once, even one the code under test
/// catches; the render path catches the panics of dicom-rs's decoders
/// (`daemon::render::guarded`). So for it a panic raised inside a dependency unwinds, to be
/// caught there; a panic nothing catches still fails the input, as libfuzzer-sys aborts when a
/// panic leaves the target. A panic in the project's own code aborts as before.
fn let_guarded_panics_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    static REPORTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_dependency = info
                .location()
                .is_some_and(|l| l.file().contains("/registry/src/"));
            if !in_dependency {
                return previous(info);
            }
            // Say where, a few times: an uncaught one is then explained in the log.
            if REPORTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 20 {
                eprintln!("panic in a dependency, to be caught by the render path: {info}");
            }
        }));
    });
}

/// Consultation events as replicated from the other site (a stream of JSON events, as they
/// arrive in `event` frames): each applied to a consultation log on a scratch sled database
/// (`store::consult::ConsultLog::apply_replicated`), then the consultations read back, and
/// the decoded events put in canonical order and folded (`proto::consult`).
pub fn replicated_events(data: &[u8]) {
    let events: Vec<Event> = serde_json::Deserializer::from_slice(data)
        .into_iter::<Event>()
        .map_while(Result::ok)
        .take(64)
        .collect();
    if events.is_empty() {
        return;
    }
    fold(&events);
    with_scratch(|s| {
        let Some(db) = scratch_db(s) else {
            return;
        };
        let Ok(log) = store::consult::ConsultLog::open(&db) else {
            return;
        };
        let mut consultations = BTreeSet::new();
        for event in &events {
            let local = event.id.side.other();
            let _ = log.apply_replicated(&event.id.clinic, local, event);
            consultations.insert(event.consultation.clone());
        }
        for c in &consultations {
            let _ = log.timeline(c);
            if let Ok(Some(folded)) = log.get(c) {
                let _ = folded.set_aside();
            }
        }
        for clinic in log.clinics().unwrap_or_default() {
            let _ = log.list(&clinic);
        }
        // The events a site sends after the cursor the peer's `replicate` frame names: any
        // number the peer chose, as the events' own numbers are here.
        for event in &events {
            for after in [event.id.seq, event.seen] {
                let _ = log.events_after(&event.id.clinic, event.id.side, after, 64);
            }
        }
    });
}

/// The pure fold over decoded events, as both sites do it: each side's events in sequence
/// order, merged canonically, then folded per consultation.
fn fold(events: &[Event]) {
    let mut clinic: Vec<Event> = Vec::new();
    let mut gateway: Vec<Event> = Vec::new();
    for e in events {
        match e.id.side {
            Side::Clinic => clinic.push(e.clone()),
            Side::Gateway => gateway.push(e.clone()),
        }
    }
    clinic.sort_by_key(|e| e.id.seq);
    gateway.sort_by_key(|e| e.id.seq);
    let ordered = canonical_order(&clinic, &gateway);
    assert_eq!(
        ordered.len(),
        events.len(),
        "the canonical order holds every event once"
    );
    let ids: BTreeSet<&ConsultationId> = events.iter().map(|e| &e.consultation).collect();
    for id in ids {
        let mine: Vec<&Event> = ordered
            .iter()
            .copied()
            .filter(|e| &e.consultation == id)
            .collect();
        if let Some(folded) = Folded::fold(mine.iter().copied()) {
            let _ = folded.set_aside();
            let _ = folded.consultation.state.label();
        }
        let _ = proto::consult::Consultation::from_events(mine.iter().copied());
    }
}

/// This thread's sled database, emptied: every input starts from no events. Opened once,
/// because opening sled costs far more than one input.
fn scratch_db(s: &mut Scratch) -> Option<sled::Db> {
    if s.db.is_none() {
        s.db = sled::Config::new()
            .path(s.dir.path().join("sled"))
            .temporary(true)
            .open()
            .ok();
    }
    let db = s.db.clone()?;
    for name in db.tree_names() {
        if let Ok(tree) = db.open_tree(&name) {
            let _ = tree.clear();
        }
    }
    Some(db)
}

/// A browser's and an API client's requests, as the daemons decode them. The first byte picks
/// what the rest is (`b'0'`–`b'3'`, or any byte modulo 4):
/// 0. a multipart upload (first line the `Content-Type`, then the body), read as the clinic's
///    import and new-case pages read it (axum's `Multipart`), each file checked as an
///    attachment (`clinic_agent::cases::check_attachment`);
/// 1. a URL-encoded form, decoded as `daemon::web::CsrfForm` does into the forms' types;
/// 2. a JSON body of the APIs;
/// 3. request headers (`Name: value` lines): session and language cookies, and ids from URLs.
pub fn multipart_and_forms(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => multipart(rest),
        1 => forms(rest),
        2 => api_bodies(rest),
        _ => headers(rest),
    }
}

/// Most bytes of an upload the body reads into memory: the pages stream files to disk, so the
/// fuzzer must not count a long file against them.
const UPLOAD_READ_LIMIT: usize = 1 << 20;

fn multipart(data: &[u8]) {
    use axum::extract::{FromRequest, Multipart};
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(n) => (&data[..n], &data[n + 1..]),
        None => (data, &[][..]),
    };
    let Ok(content_type) = axum::http::HeaderValue::from_bytes(content_type) else {
        return;
    };
    let Ok(request) = axum::http::Request::builder()
        .method("POST")
        .uri("/cases/new")
        .header(axum::http::header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(body.to_vec()))
    else {
        return;
    };
    with_scratch(|s| {
        if s.runtime.is_none() {
            s.runtime = tokio::runtime::Builder::new_current_thread().build().ok();
        }
        let Some(runtime) = s.runtime.as_ref() else {
            return;
        };
        runtime.block_on(async move {
            let Ok(mut form) = Multipart::from_request(request, &()).await else {
                return;
            };
            while let Ok(Some(mut field)) = form.next_field().await {
                let name = field.name().unwrap_or("").to_owned();
                match field.file_name().map(str::to_owned) {
                    Some(file_name) if !file_name.is_empty() => {
                        let media_type = field.content_type().unwrap_or("").to_owned();
                        let mut bytes = Vec::new();
                        while let Ok(Some(chunk)) = field.chunk().await {
                            if bytes.len() < UPLOAD_READ_LIMIT {
                                bytes.extend_from_slice(&chunk);
                            }
                        }
                        let _ =
                            clinic_agent::cases::check_attachment(&file_name, &media_type, &bytes);
                    }
                    Some(_) => {}
                    None => {
                        let _ = (name, field.text().await);
                    }
                }
            }
        });
    });
}

fn forms(data: &[u8]) {
    use daemon::web::decode_form;
    let _ = decode_form::<gateway::api::ActionBody>(data);
    let _ = decode_form::<clinic_agent::cases::ActionBody>(data);
    let _ = decode_form::<std::collections::HashMap<String, String>>(data);
    let _ = decode_form::<std::collections::HashMap<String, Vec<String>>>(data);
}

fn api_bodies(data: &[u8]) {
    use serde_json::from_slice;
    let _ = from_slice::<clinic_agent::cases::NewConsultation>(data);
    let _ = from_slice::<clinic_agent::cases::ActionBody>(data);
    let _ = from_slice::<clinic_agent::api::ImportRequest>(data);
    let _ = from_slice::<clinic_agent::api::PriorityRequest>(data);
    let _ = from_slice::<gateway::api::ActionBody>(data);
    let _ = from_slice::<gateway::api::BackupRequest>(data);
}

fn headers(data: &[u8]) {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let _ = daemon::web::session_token(&headers);
    let _ = daemon::web::lang_of(&headers);
    let _ = daemon::web::cookie_name(&headers, "tpg_session");
    // Ids a URL path carries.
    let text = String::from_utf8_lossy(data);
    for part in text.split(['/', '\n']) {
        let _ = ConsultationId::parse(part);
        let _ = proto::ClinicId::new(part);
        let _ = proto::sync::ObjectId::parse(part);
    }
}

/// DICOMweb and FHIR as the daemons decode them. The first byte picks what the rest is (any
/// byte modulo 3):
/// 0. a STOW-RS request (first line its `Content-Type`, then the body), read and answered as
///    both daemons do (`daemon::dicomweb::stow::serve`), each part staged in a scratch folder
///    and checked as the clinic agent checks it (`store::dicom::summarize`, and
///    `stow::meta_uids` on its first bytes);
/// 1. request text: each line an `Accept` value negotiated for metadata, instances and frames
///    of a few stored transfer syntaxes (`daemon::dicomweb::media`) and a FHIR date search
///    value (`gateway::fhir::date_matches`); the whole a QIDO-RS query string
///    (`gateway::dicomweb::query_pairs`) whose keys are matched against sample values;
/// 2. a stored instance as WADO-RS reads it (`daemon::dicomweb::instance`): its header and
///    metadata, the first, second and last frames as stored and in Explicit VR Little Endian,
///    its first bulk value, and the instance converted.
pub fn dicomweb(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => stow(rest),
        1 => dicomweb_requests(rest),
        _ => wado(rest),
    }
}

fn stow(data: &[u8]) {
    use daemon::dicomweb::stow::{self, Outcome};
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(n) => (&data[..n], &data[n + 1..]),
        None => (data, &[][..]),
    };
    let content_type = String::from_utf8_lossy(content_type).into_owned();
    let body = axum::body::Body::from(body.to_vec());
    with_scratch(|s| {
        let staging = s.dir.path().join("stow");
        if std::fs::create_dir_all(&staging).is_err() {
            return;
        }
        if s.runtime.is_none() {
            s.runtime = tokio::runtime::Builder::new_current_thread().build().ok();
        }
        let Some(runtime) = s.runtime.as_ref() else {
            return;
        };
        let stage = move || store::blob::TempBlob::create_in(&staging).map_err(|e| e.to_string());
        let keep = |part: usize, staged: store::blob::TempBlob, head: Vec<u8>| {
            let (sop_class, sop_instance) = stow::meta_uids(&head);
            let result = match store::dicom::summarize(staged.path()) {
                Ok(s) => Ok(Some(s.sop_instance_uid)),
                Err(e) => Err((stow::reason::CANNOT_UNDERSTAND, e.to_string())),
            };
            Outcome {
                part,
                sop_class,
                sop_instance,
                result,
            }
        };
        let _ = runtime.block_on(stow::serve(
            Some(content_type.as_str()),
            body,
            stage,
            keep,
            Some("https://hospital.example/dicomweb/studies/1.2.3"),
        ));
    });
}

/// Transfer syntaxes an instance may be stored in, for negotiating its retrieval.
const STORED_SYNTAXES: [&str; 4] = [
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.90",
];

fn dicomweb_requests(data: &[u8]) {
    use daemon::dicomweb::media;
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = media::accepts_json(Some(line));
        for stored in STORED_SYNTAXES {
            let _ = media::instances(Some(line), stored);
            let _ = media::frames(Some(line), stored);
        }
        let _ = gateway::fhir::date_matches(line, Some(1_764_892_800_000));
        let _ = daemon::dicomweb::parse_tag_key(line);
    }
    let Ok(query) = gateway::dicomweb::query_pairs(Some(&text)) else {
        return;
    };
    let samples = [
        String::new(),
        "DOE^JANE".to_owned(),
        "20261205".to_owned(),
        "1.2.840.113619.2.55.3".to_owned(),
        "CT\\MR".to_owned(),
    ];
    for (tag, asked) in &query.keys {
        let vr = gateway::dicomweb::qido::vr_of(*tag);
        let _ = gateway::dicomweb::qido::matches(vr, asked, &samples, query.fuzzy);
        let _ = gateway::dicomweb::qido::matches(vr, asked, &samples[..1], query.fuzzy);
    }
}

fn wado(data: &[u8]) {
    use daemon::dicomweb::instance;
    use daemon::dicomweb::media::{Syntax, EXPLICIT_LE};
    let_guarded_panics_unwind();
    with_scratch(|s| {
        let Some(path) = scratch_file(s, "wado.dcm", data) else {
            return;
        };
        let Ok(header) = instance::header(&path) else {
            return;
        };
        let _ = header.metadata("https://hospital.example/dicomweb/studies/1/series/2/instances/3");
        let _ = header.text(dicom_dictionary_std::tags::SOP_INSTANCE_UID);
        let last = daemon::render::info(&path).map_or(1, |i| i.frames);
        for syntax in [Syntax::AsStored, Syntax::ExplicitLe] {
            for numbers in [&[1][..], &[2], &[last], &[1, last]] {
                let _ = instance::frames(&path, numbers, &syntax);
            }
        }
        if let Some((tag, _)) = header.bulk.first() {
            let _ = instance::bulk(&path, *tag);
        }
        let _ = instance::bulk(&path, dicom_dictionary_std::tags::PIXEL_DATA);
        let _ = instance::transcoded(&path, EXPLICIT_LE, 64 << 20);
    });
}

/// The daemons' configuration files as they read them at start and the gateway's roster as it
/// re-reads it when edited: the same text parsed as `gateway.toml`, `agent.toml` and
/// `routing.toml`, in a scratch folder where the files the examples name exist (empty: the
/// parse checks they exist, the TLS setup reads them later). A roster that parses is asked
/// who is on duty and its deadlines.
pub fn configs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    with_scratch(|s| {
        let Some(dir) = config_dir(s) else {
            return;
        };
        let _ = gateway::GatewayConfig::parse(&dir.join("gateway.toml"), text);
        let _ = clinic_agent::AgentConfig::parse(&dir.join("agent.toml"), text);
        if let Ok(roster) = gateway::routing::Roster::parse(&dir.join("routing.toml"), text) {
            use proto::sync::Priority;
            for urgency in Priority::ALL {
                let _ = roster.sla(urgency);
                let _ = roster.escalation_due_ms(urgency, i64::MAX);
                let _ = roster.escalation_due_ms(urgency, i64::MIN);
            }
            for id in roster.specialists.keys() {
                for now in [i64::MIN, -1, 0, 1_700_000_000_000, i64::MAX] {
                    let _ = roster.on_duty(id, now);
                }
            }
        }
    });
}

/// The files the seed configurations name, relative to the folder the configuration is in.
const CONFIG_FILES: [&str; 7] = [
    "routing.toml",
    "cert.pem",
    "key.pem",
    "ca.pem",
    "crl.pem",
    "web-cert.pem",
    "web-key.pem",
];

fn config_dir(s: &mut Scratch) -> Option<PathBuf> {
    if s.config_dir.is_none() {
        let dir = s.dir.path().join("config");
        std::fs::create_dir_all(&dir).ok()?;
        for file in CONFIG_FILES {
            std::fs::write(dir.join(file), b"").ok()?;
        }
        s.config_dir = Some(dir);
    }
    s.config_dir.clone()
}

/// The CRL loader as the gateway runs it at start and whenever `crl.pem` changes: the file read
/// (`certs::tls::read_crls`), the gateway's TLS configuration built with it
/// (`certs::tls::server_config`, where webpki parses every CRL), and the revoked serials read
/// for the link board (`certs::identity::crl_serials`). The input is tried as the PEM file, and
/// as the DER of one CRL wrapped in PEM, so the fuzzer reaches the DER parsers directly.
pub fn crl(data: &[u8]) {
    let _ = certs::identity::crl_serials(data);
    with_scratch(|s| {
        let Some(pki) = scratch_pki(s) else {
            return;
        };
        let wrapped = pem("X509 CRL", data);
        for (name, bytes) in [("crl.pem", data), ("crl-der.pem", wrapped.as_bytes())] {
            let Some(path) = scratch_file(s, name, bytes) else {
                return;
            };
            let Ok(crls) = certs::tls::read_crls(&path) else {
                continue;
            };
            for der in &crls {
                let _ = certs::identity::crl_serials(der);
            }
            let files = certs::tls::ServerFiles {
                cert: &pki.join("gateway/cert.pem"),
                key: &pki.join("gateway/key.pem"),
                ca: &pki.join("ca.pem"),
                crl: &path,
            };
            let hook: certs::tls::RefusalHook = Arc::new(|_| {});
            let _ = certs::tls::server_config(&files, Vec::new(), hook);
        }
    });
}

/// This thread's CA folder with a gateway certificate, made once.
fn scratch_pki(s: &mut Scratch) -> Option<PathBuf> {
    if s.pki.is_none() {
        let dir = s.dir.path().join("pki");
        let made = (|| {
            let mut pki =
                certs::pki::Pki::init(&dir, certs::pki::DEFAULT_CA_NAME, 30, false).ok()?;
            pki.issue_gateway(
                &["localhost".into()],
                &[],
                certs::pki::Validity::days_from_now(30).ok()?,
                false,
            )
            .ok()?;
            Some(dir.clone())
        })();
        s.pki = Some(made);
    }
    s.pki.clone().flatten()
}

/// `bytes` as a PEM block with `label`.
fn pem(label: &str, bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A fuzz target's body: any bytes in, no panic out.
pub type Body = fn(&[u8]);

/// The fuzz targets: name and body. `tests/tests/hostile_inputs.rs` replays each target's
/// corpus and regressions with its body; `scripts/fuzz` runs them in this order.
pub const TARGETS: [(&str, Body); 10] = [
    ("control_frames", control_frames),
    ("block_header", block_header),
    ("dicom_walk", dicom_walk),
    ("dimse", dimse),
    ("replicated_events", replicated_events),
    ("multipart_and_forms", multipart_and_forms),
    ("dicomweb", dicomweb),
    ("configs", configs),
    ("crl", crl),
    ("render", render),
];

/// Seed inputs made here rather than copied (pydicom's test files are copied by the test that
/// writes seeds): `(target, file name, bytes)`.
pub fn seeds() -> anyhow::Result<Vec<(&'static str, String, Vec<u8>)>> {
    seeds::all()
}

mod seeds;

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds_of(target: &str) -> Vec<(String, Vec<u8>)> {
        seeds()
            .unwrap()
            .into_iter()
            .filter(|(t, _, _)| *t == target)
            .map(|(_, name, bytes)| (name, bytes))
            .collect()
    }

    /// Seeds that the decoders refuse at the first check would only teach the fuzzer that
    /// check: the made ones are accepted whole.
    #[test]
    fn the_made_seeds_are_accepted_by_their_decoders() {
        for (name, bytes) in seeds_of("configs") {
            if name.starts_with("extreme-") {
                continue; // they may be refused; they must not panic
            }
            with_scratch(|s| {
                let dir = config_dir(s).unwrap();
                let text = std::str::from_utf8(&bytes).unwrap();
                let ok = match name.as_str() {
                    "gateway.toml" => gateway::GatewayConfig::parse(&dir.join(&name), text)
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    "agent.toml" => clinic_agent::AgentConfig::parse(&dir.join(&name), text)
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    _ => gateway::routing::Roster::parse(&dir.join(&name), text)
                        .map(drop)
                        .map_err(|e| e.to_string()),
                };
                assert_eq!(ok, Ok(()), "{name}");
            });
        }
        for (name, bytes) in seeds_of("dimse") {
            if name.starts_with("c-") {
                assert!(daemon::dimse::parse(&bytes).is_ok(), "{name}");
            } else {
                let mut buf = bytes.as_slice();
                assert!(
                    matches!(dicom_ul::read_pdu(&mut buf, MAX_PDU, true), Ok(Some(_))),
                    "{name}"
                );
            }
        }
        for (name, bytes) in seeds_of("control_frames") {
            let mut decoder = FrameDecoder::default();
            decoder.push(&bytes[1..]);
            assert!(matches!(decoder.next_frame(), Ok(Some(_))), "{name}");
        }
        for (name, bytes) in seeds_of("replicated_events") {
            let events = serde_json::Deserializer::from_slice(&bytes).into_iter::<Event>();
            assert!(events.count() >= 2, "{name}");
            assert!(events_decode_all(&bytes), "{name}");
        }
        for (name, bytes) in seeds_of("crl") {
            with_scratch(|s| {
                let file = if name.ends_with(".der") {
                    pem("X509 CRL", &bytes).into_bytes()
                } else {
                    bytes.clone()
                };
                let path = scratch_file(s, "seed-crl.pem", &file).unwrap();
                assert!(certs::tls::read_crls(&path).is_ok(), "{name}");
            });
        }
    }

    fn events_decode_all(bytes: &[u8]) -> bool {
        serde_json::Deserializer::from_slice(bytes)
            .into_iter::<Event>()
            .all(|e| e.is_ok())
    }

    #[test]
    fn pem_wraps_base64_as_rustls_reads_it() {
        use rustls::pki_types::pem::PemObject;
        for len in 0..8 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            let text = pem("X509 CRL", &bytes);
            if len == 0 {
                continue;
            }
            let der =
                rustls::pki_types::CertificateRevocationListDer::from_pem_slice(text.as_bytes())
                    .unwrap();
            assert_eq!(der.as_ref(), bytes.as_slice(), "length {len}");
        }
    }
}
