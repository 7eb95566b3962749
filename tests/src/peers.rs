//! The hospital's DICOM peers, started by the tests on loopback: DCMTK's `storescp` and
//! Orthanc (Debian packages; `scripts/test` installs them). Each stops when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

fn wait_for_port(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not start listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// DCMTK's `storescp` writing what it receives under `dir`.
pub struct Storescp {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub ae_title: String,
    options: Vec<String>,
    child: Option<Child>,
}

impl Storescp {
    /// Starts on a free port; `options` as DCMTK takes them (`+xa` accepts every transfer
    /// syntax; without it only uncompressed ones).
    pub fn start(dir: &Path, ae_title: &str, options: &[&str]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut scp = Self {
            addr: crate::free_tcp_addr(),
            dir: dir.to_path_buf(),
            ae_title: ae_title.to_owned(),
            options: options.iter().map(|o| o.to_string()).collect(),
            child: None,
        };
        scp.restart()?;
        Ok(scp)
    }

    /// Starts it again on the same port (after [`Self::stop`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let child = Command::new("storescp")
            .env("TCP_NODELAY", "1")
            .args(["--aetitle", &self.ae_title, "-od"])
            .arg(&self.dir)
            .args(&self.options)
            .arg(self.addr.port().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("storescp must be installed (apt-get install dcmtk; scripts/test does)")?;
        self.child = Some(child);
        wait_for_port(self.addr, "storescp")
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }

    /// The files received so far.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        out.sort();
        out
    }
}

impl Drop for Storescp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An Orthanc server with its own storage, DICOM and HTTP ports on loopback, no
/// authentication.
pub struct Orthanc {
    pub dicom: SocketAddr,
    pub http: SocketAddr,
    pub ae_title: String,
    child: Child,
}

/// The DICOMweb plugin of Debian's `orthanc-dicomweb` (`scripts/test` installs it).
pub const ORTHANC_DICOMWEB: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

impl Orthanc {
    pub fn start(dir: &Path, ae_title: &str) -> anyhow::Result<Self> {
        Self::start_with(dir, ae_title, false)
    }

    /// An Orthanc that also serves DICOMweb at `/dicom-web/` ([`Orthanc::dicomweb`]).
    pub fn start_with_dicomweb(dir: &Path, ae_title: &str) -> anyhow::Result<Self> {
        Self::start_with(dir, ae_title, true)
    }

    /// Its DICOMweb service's root.
    pub fn dicomweb(&self) -> String {
        format!("http://{}/dicom-web", self.http)
    }

    fn start_with(dir: &Path, ae_title: &str, dicomweb: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let dicom = crate::free_tcp_addr();
        let http = crate::free_tcp_addr();
        let config = serde_json::json!({
            "Name": "TPG test PACS",
            "StorageDirectory": dir.join("storage"),
            "IndexDirectory": dir.join("index"),
            "HttpPort": http.port(),
            "DicomPort": dicom.port(),
            "DicomAet": ae_title,
            "AuthenticationEnabled": false,
            "RemoteAccessAllowed": false,
            "HttpServerEnabled": true,
            "DicomCheckCalledAet": true,
            "StableAge": 1,
        });
        let mut config = config;
        if dicomweb {
            anyhow::ensure!(
                Path::new(ORTHANC_DICOMWEB).exists(),
                "{ORTHANC_DICOMWEB} is missing: apt-get install orthanc-dicomweb (scripts/test does)"
            );
            config["Plugins"] = serde_json::json!([ORTHANC_DICOMWEB]);
            config["DicomWeb"] = serde_json::json!({
                "Enable": true,
                "Root": "/dicom-web/",
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            });
        }
        let file = dir.join("orthanc.json");
        std::fs::write(&file, serde_json::to_string_pretty(&config)?)?;
        let binary = ["Orthanc", "/usr/sbin/Orthanc"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .context("Orthanc must be installed (apt-get install orthanc; scripts/test does)")?;
        let child = Command::new(binary)
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start Orthanc")?;
        let orthanc = Self {
            dicom,
            http,
            ae_title: ae_title.to_owned(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::http_get(http, "/system").is_err() {
            if Instant::now() > deadline {
                bail!("Orthanc did not answer GET /system on {http}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(orthanc)
    }

    /// A GET on its REST API, parsed as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&crate::http_get(self.http, path)?)?)
    }

    /// The stored instances' ids.
    pub fn instances(&self) -> anyhow::Result<Vec<String>> {
        Ok(serde_json::from_value(self.get("/instances")?)?)
    }

    /// A stored instance's DICOM file, written to `path`.
    pub fn download(&self, id: &str, path: &Path) -> anyhow::Result<()> {
        let bytes = crate::http_get_bytes(self.http, &format!("/instances/{id}/file"), None)?;
        std::fs::write(path, bytes)?;
        Ok(())
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A PACS that keeps the first version of each SOP instance and answers a later one with other
/// bytes "duplicate SOP instance" (0111), as PACS set to refuse updates do (DCMTK's `storescp`
/// and Orthanc take the new one): a peer of its own, since neither does this.
pub struct RefusingPacs {
    pub addr: SocketAddr,
    pub ae_title: String,
    /// Per SOP Instance UID, the SHA-256 of the data set kept.
    pub kept: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
    /// C-STORE requests answered 0111.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RefusingPacs {
    pub fn start(ae_title: &str) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let pacs = Self {
            addr: listener.local_addr()?,
            ae_title: ae_title.to_owned(),
            kept: Default::default(),
            refused: Default::default(),
        };
        let (ae, kept, refused) = (
            pacs.ae_title.clone(),
            pacs.kept.clone(),
            pacs.refused.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (ae, kept, refused) = (ae.clone(), kept.clone(), refused.clone());
                std::thread::spawn(move || {
                    let _ = serve_refusing(stream, &ae, &kept, &refused);
                });
            }
        });
        Ok(pacs)
    }
}

fn serve_refusing(
    stream: std::net::TcpStream,
    ae: &str,
    kept: &std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    refused: &std::sync::atomic::AtomicUsize,
) -> anyhow::Result<()> {
    use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
    use sha2::Digest;
    let mut association = dicom_ul::association::server::ServerAssociationOptions::new()
        .ae_title(ae)
        .promiscuous(true)
        .with_abstract_syntax("1.2.840.10008.1.1")
        .establish(stream)?;
    let (mut command_bytes, mut data) = (Vec::new(), sha2::Sha256::new());
    let mut current: Option<daemon::dimse::Command> = None;
    loop {
        match association.receive()? {
            Pdu::PData { data: pdvs } => {
                for pdv in pdvs {
                    let context = pdv.presentation_context_id;
                    let answer = match pdv.value_type {
                        PDataValueType::Command => {
                            command_bytes.extend_from_slice(&pdv.data);
                            if !pdv.is_last {
                                continue;
                            }
                            let command = daemon::dimse::parse(&std::mem::take(&mut command_bytes))
                                .map_err(anyhow::Error::msg)?;
                            if command.has_data_set {
                                current = Some(command);
                                data = sha2::Sha256::new();
                                continue;
                            }
                            daemon::dimse::response(&command, daemon::dimse::C_ECHO_RSP, 0)
                        }
                        PDataValueType::Data => {
                            data.update(&pdv.data);
                            if !pdv.is_last {
                                continue;
                            }
                            let Some(command) = current.take() else {
                                continue;
                            };
                            let hash = format!("{:x}", std::mem::take(&mut data).finalize());
                            let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                            let status = match kept.get(&command.sop_instance) {
                                Some(h) if *h != hash => {
                                    refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                    0x0111
                                }
                                _ => {
                                    kept.insert(command.sop_instance.clone(), hash);
                                    0
                                }
                            };
                            daemon::dimse::response(&command, daemon::dimse::C_STORE_RSP, status)
                        }
                    };
                    association.send(&Pdu::PData {
                        data: vec![PDataValue {
                            presentation_context_id: context,
                            value_type: PDataValueType::Command,
                            is_last: true,
                            data: answer,
                        }],
                    })?;
                }
            }
            Pdu::ReleaseRQ => {
                association.send(&Pdu::ReleaseRP)?;
                return Ok(());
            }
            _ => return Ok(()),
        }
    }
}
