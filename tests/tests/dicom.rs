//! The agent's DICOM listener against real DCMTK tools (`echoscu`, `storescu`), with
//! uncompressed and JPEG / JPEG 2000 / RLE encoded instances, through to the gateway.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::samples::{pydicom_test_files, write_ct_series};
use harness::{metric, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};

const WAIT: Duration = Duration::from_secs(60);

/// A pilot folder in `dir` and its gateway on loopback.
fn gateway(dir: &Path) -> (PilotDir, RunningGateway) {
    let pilot = PilotDir::create(dir, Timings::default()).unwrap();
    let gw = RunningGateway::start(
        pilot
            .gateway_config("127.0.0.1:0".parse().unwrap())
            .unwrap(),
    )
    .unwrap();
    (pilot, gw)
}

fn start(dir: &Path, allowed: &str) -> (PilotDir, RunningGateway, RunningAgent) {
    let (pilot, gw) = gateway(dir);
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let config = pilot
        .agent_config_with("jinzhou", &bundle, gw.link_addr, "", allowed)
        .unwrap();
    let agent = RunningAgent::start(config, Default::default()).unwrap();
    (pilot, gw, agent)
}

/// Runs a DCMTK tool against the agent with TCP_NODELAY (stock DCMTK is slow on loopback).
fn dcmtk(tool: &str, args: &[&str], agent: &RunningAgent, calling: &str) -> (bool, String) {
    // DCMTK's order: options, then peer and port, then files.
    let (options, files): (Vec<&str>, Vec<&str>) = args.iter().partition(|a| a.starts_with('-'));
    let out = Command::new(tool)
        .env("TCP_NODELAY", "1")
        .args(["-aet", calling, "-aec", "TPG_JINZHOU"])
        .args(options)
        .arg("127.0.0.1")
        .arg(agent.dicom_addr.port().to_string())
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!("{tool} must be installed (apt-get install dcmtk; ./scripts/test does): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The data set bytes after the 128-byte preamble, `DICM` and the file meta group: what the
/// modality sent, whatever meta header each side wrote.
fn data_set(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[128..132], b"DICM", "{}", path.display());
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    bytes[144 + group_len..].to_vec()
}

/// The Pixel Data value (native bytes or encapsulated fragments), as dicom-rs reads it.
fn pixel_data(path: &Path) -> String {
    let obj = dicom_object::open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value = obj
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .unwrap()
        .value();
    format!("{value:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcmtk_echo_and_store_in_every_transfer_syntax_reach_the_gateway_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (_pilot, gw, agent) = start(dir.path(), "");
    let (ok, out) = dcmtk("echoscu", &[], &agent, "ECHOSCU");
    assert!(ok, "C-ECHO answered: {out}");

    let study = write_ct_series(&dir.path().join("ct"), "PID-DCMTK", 5, 200_000, 3).unwrap();
    let samples = pydicom_test_files().unwrap();
    let mut sent: Vec<(PathBuf, &str)> = study.files.iter().map(|f| (f.clone(), "")).collect();
    for (name, flag) in [
        ("CT_small.dcm", ""),
        ("SC_rgb_jpeg_dcmtk.dcm", "-xy"),
        ("JPEG-lossy.dcm", "-xx"),
        ("MR_small_jp2klossless.dcm", "-xv"),
        ("JPEG2000.dcm", "-xw"),
        ("MR_small_RLE.dcm", "-xr"),
    ] {
        sent.push((samples.join(name), flag));
    }
    for (file, flag) in &sent {
        let mut args: Vec<&str> = Vec::new();
        if !flag.is_empty() {
            args.push(flag);
        }
        let path = file.to_str().unwrap();
        args.push(path);
        let (ok, out) = dcmtk("storescu", &args, &agent, "STORESCU");
        assert!(ok, "storescu {flag} {}: {out}", file.display());
    }
    let n = sent.len() as u64;
    assert_eq!(
        metric(&agent.metrics(), "tpg_agent_dicom_instances_received_total"),
        Some(n as f64)
    );
    assert!(
        wait_until(WAIT, || agent.handle.status_report().count("delivered").0
            == n)
        .await,
        "{}",
        agent.handle.status_report().render()
    );
    // At the gateway: the very bytes the agent stored (content address verified), and per
    // instance the same SOP Instance UID and pixel data the modality sent. DCMTK drops group
    // lengths and padding on the way, so data sets are compared, not files.
    // pydicom's MR_small variants share one SOP Instance UID with different bytes: the agent
    // keeps each as a version, so match by UID and pixel data.
    let mut by_uid: std::collections::HashMap<String, Vec<PathBuf>> = Default::default();
    for (id, record) in agent.handle.store.objects() {
        let path = gw.stored_file(&id).unwrap();
        assert_eq!(store::blob::hash_file(&path).unwrap(), id);
        by_uid
            .entry(record.sop_instance_uid.clone())
            .or_default()
            .push(path);
    }
    for (file, flag) in &sent {
        let uid = store::dicom::summarize(file).unwrap().sop_instance_uid;
        let candidates = by_uid
            .get(&uid)
            .unwrap_or_else(|| panic!("{} ({flag}) missing at the gateway", file.display()));
        let original = pixel_data(file);
        assert!(
            candidates.iter().any(|c| pixel_data(c) == original),
            "pixel data of {} ({flag}) differs at the gateway",
            file.display()
        );
    }
    let first = &by_uid[&store::dicom::summarize(&study.files[0])
        .unwrap()
        .sop_instance_uid][0];
    assert_eq!(
        data_set(first),
        data_set(&study.files[0]),
        "an uncompressed data set is byte-identical"
    );
    // Sending the same instance again is acknowledged and stored once.
    let (ok, _) = dcmtk(
        "storescu",
        &[study.files[0].to_str().unwrap()],
        &agent,
        "STORESCU",
    );
    assert!(ok);
    assert_eq!(agent.handle.store.objects().len() as u64, n);
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ae_title_not_on_the_allow_list_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_pilot, gw, agent) = start(dir.path(), "allowed_calling_ae_titles = [\"CT_ROOM_1\"]");
    let (ok, out) = dcmtk("echoscu", &[], &agent, "INTRUDER");
    assert!(!ok, "an unknown modality must be refused: {out}");
    assert!(out.to_lowercase().contains("reject"), "{out}");
    assert_eq!(
        metric(
            &agent.metrics(),
            "tpg_agent_dicom_associations_rejected_total"
        ),
        Some(1.0)
    );
    let (ok, out) = dcmtk("echoscu", &[], &agent, "CT_ROOM_1");
    assert!(ok, "the allowed modality is answered: {out}");
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// The clinic PC's disk fills up while the modality sends: the instance that does not fit is
/// refused "out of resources" on a live association (the modality knows what to send again),
/// the agent keeps running, and every instance it accepted reaches the gateway intact.
///
/// The agent runs as its own process with its data folder on a 6 MiB tmpfs of its own
/// (`harness::spawn_on_small_disk`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_the_clinic_refuses_the_instance_that_does_not_fit_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (pilot, gw) = gateway(dir.path());
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let config = pilot
        .agent_config("jinzhou", &bundle, gw.link_addr)
        .unwrap();
    let dicom = harness::free_tcp_addr();
    harness::set_listen(&config.file, "dicom", dicom).unwrap();
    let mut agent = harness::spawn_on_small_disk(
        "clinic-agent",
        "run",
        &config.file,
        &config.data_dir,
        "6m",
        std::process::Stdio::piped(),
    );
    let port = dicom.port().to_string();
    let scu = |tool: &str, files: &[PathBuf]| {
        let out = Command::new(tool)
            .env("TCP_NODELAY", "1")
            .args([
                "-v",
                "-aet",
                "MODALITY",
                "-aec",
                "TPG_JINZHOU",
                "127.0.0.1",
                &port,
            ])
            .args(files)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let listening = wait_until(WAIT, || {
        agent.try_wait().unwrap().is_none()
            && scu("echoscu", &[]).contains("Echo Response (Success)")
    })
    .await;
    if !listening {
        let _ = agent.kill();
        let out = agent.wait_with_output().unwrap();
        panic!(
            "the agent on a small tmpfs did not start (this test needs user namespaces or root to mount one): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Twelve 1 MiB images into 6 MiB: the first few fit, then one does not.
    let study = write_ct_series(&dir.path().join("ct"), "PID-FULL", 12, 1024 * 1024, 4).unwrap();
    let out = scu("storescu", &study.files);
    let accepted = out.matches("Received Store Response (Success)").count();
    assert!(
        out.contains("Received Store Response (Refused: OutOfResources)"),
        "{out}"
    );
    assert!((1..12).contains(&accepted), "{out}");
    assert!(
        out.contains("Releasing Association") && !out.contains("Abort"),
        "the refusal keeps the association: {out}"
    );
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    assert!(scu("echoscu", &[]).contains("Echo Response (Success)"));

    // Every accepted instance, and only those, is stored at the gateway with the same data set.
    let clinic = proto::ClinicId::new("jinzhou").unwrap();
    let stored = || gw.handle.archive.instances(&clinic);
    assert!(
        wait_until(WAIT, || stored().len() == accepted).await,
        "{} of {accepted} at the gateway",
        stored().len()
    );
    for file in &study.files[..accepted] {
        let uid = store::dicom::summarize(file).unwrap().sop_instance_uid;
        let (_, record) = stored()
            .into_iter()
            .find(|(ids, _)| ids[3] == uid)
            .unwrap_or_else(|| panic!("{} missing at the gateway", file.display()));
        let at_gateway = gw.stored_file(&record.object).unwrap();
        assert_eq!(data_set(&at_gateway), data_set(file));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    gw.stop().await.unwrap();
}

/// Sockets that connect to the DICOM port and send nothing (a broken device, a scanner on the
/// LAN) hold at most their address's share of the listener, and only until they have been
/// idle for `[dicom] idle_timeout_secs`: the modalities on other addresses are served
/// meanwhile, and the address itself once its idle sockets are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cannot_hold_the_dicom_listener() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let (_pilot, gw, agent) = start(
        dir.path(),
        "idle_timeout_secs = 2\nmax_associations_per_peer = 3",
    );
    // Six idle sockets from 127.0.0.2: three are kept (and then timed out), three closed.
    let idle: Vec<std::net::TcpStream> = (0..6)
        .map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket
                .bind(
                    &"127.0.0.2:0"
                        .parse::<std::net::SocketAddr>()
                        .unwrap()
                        .into(),
                )
                .unwrap();
            socket.connect(&agent.dicom_addr.into()).unwrap();
            socket.into()
        })
        .collect();
    // Closed by the agent: the read ends (0 bytes or reset); still held: the read times out.
    let closed = |s: &std::net::TcpStream| {
        s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        match (&*s).read(&mut [0u8; 1]) {
            // The agent never writes first: any answer is the end of the stream.
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let refused = idle.iter().filter(|s| closed(s)).count();
    assert_eq!(refused, 3, "three over the address's share are refused");
    // Another address (the modality, 127.0.0.1) is served while they idle.
    let (ok, out) = dcmtk("echoscu", &[], &agent, "ECHOSCU");
    assert!(ok, "{out}");
    // After the idle timeout the held ones are closed too.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(idle.iter().all(closed), "closed after the idle timeout");
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}
