//! `agent.toml`: parsed strictly (unknown keys are errors), relative paths resolved against
//! the file's folder, every problem reported with the file and the key. Keys are documented
//! in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon::config::{self, existing, secs, ConfigError};
use proto::backoff::BackoffConfig;
use proto::config::{host_port, listen_addr, resolve, ConfigValueError};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    link: RawLink,
    #[serde(default)]
    dicom: RawDicom,
    #[serde(default)]
    web: RawListen,
    #[serde(default)]
    metrics: RawListen,
    #[serde(default)]
    clinic: RawClinic,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClinic {
    case_prefix: Option<String>,
}

/// `[link] gateway`: one address, or the addresses of several gateway nodes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMore {
    One(String),
    More(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    gateway: OneOrMore,
    server_name: Option<String>,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    reconnect_initial_ms: Option<u64>,
    reconnect_max_secs: Option<u64>,
    keep_alive_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    heartbeat_secs: Option<u64>,
    handshake_timeout_secs: Option<u64>,
    upload_limit_kib_per_sec: Option<u64>,
    routine_limit_kib_per_sec: Option<u64>,
    full_rate_hours: Option<String>,
    utc_offset: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDicom {
    listen: Option<String>,
    ae_title: Option<String>,
    allowed_calling_ae_titles: Option<Vec<String>>,
    idle_timeout_secs: Option<u64>,
    max_associations_per_peer: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    listen: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub file: PathBuf,
    pub data_dir: PathBuf,
    pub link: LinkConfig,
    pub dicom: DicomConfig,
    pub web_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// `[clinic] case_prefix`: the start of the clinic's case numbers (`JZ` in
    /// `JZ-2026-0042`); `None`: derived from the clinic id (`proto::find::CaseNumber`).
    pub case_prefix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Gateway host (name or IP) and UDP port; the name is resolved at every dial.
    pub gateway_host: String,
    pub gateway_port: u16,
    /// Every gateway node the agent may link to (host, UDP port, the name its certificate
    /// must carry: `[link] server_name`, or else its host), the first being
    /// `gateway_host:gateway_port`: a dial that fails moves on to the next
    /// (`[link] gateway = ["a:4433", "b:4433"]`).
    pub gateways: Vec<(String, u16, String)>,
    /// Name checked against the gateway's certificate.
    pub server_name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub backoff: BackoffConfig,
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
    pub heartbeat: Duration,
    pub handshake_timeout: Duration,
    /// Cap on object bytes sent per second (all transfers together); `None`: no cap.
    pub upload_limit: Option<u64>,
    /// A lower cap for routine objects while the line is needed for other work.
    pub routine: Option<RoutineLimit>,
}

/// Routine objects at `bytes_per_sec` (link bytes, all routine transfers together) outside
/// the daily `full_rate` window of local time; emergency and urgent objects and consultation
/// records are never held to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutineLimit {
    pub bytes_per_sec: u64,
    /// `None`: the cap holds all day.
    pub full_rate: Option<proto::hours::DailyWindow>,
    /// The clinic's offset from UTC, for the window's local times.
    pub utc_offset_secs: i64,
}

#[derive(Debug, Clone)]
pub struct DicomConfig {
    pub listen: SocketAddr,
    pub ae_title: String,
    /// Calling AE titles allowed to associate; empty: any.
    pub allowed_calling_ae_titles: Vec<String>,
    /// A connection that sends nothing for this long is closed, before or during an
    /// association, so idle sockets cannot hold the listener's places.
    pub idle_timeout: std::time::Duration,
    /// Associations one address may hold at once.
    pub max_associations_per_peer: usize,
}

pub const DEFAULT_DICOM_LISTEN: &str = "0.0.0.0:11112";
pub const DEFAULT_AE_TITLE: &str = "TPG_AGENT";
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9101";

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_raw(path, config::read(path)?)
    }

    /// Parses `text` as if read from `path` (relative paths resolve against its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::from_raw(path, config::parse(path, text)?)
    }

    fn from_raw(path: &Path, raw: RawConfig) -> Result<Self, ConfigError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let listed = match &raw.link.gateway {
            OneOrMore::One(one) => vec![one.clone()],
            OneOrMore::More(more) => more.clone(),
        };
        if listed.is_empty() {
            return Err(ConfigError::Parse {
                path: path.display().to_string(),
                message: "[link] gateway is an empty list; name the gateway, e.g. gateway = \"gw.hospital.example:4433\"".into(),
            });
        }
        let gateways = listed
            .iter()
            .map(|g| {
                let (host, port) = host_port(path, "[link] gateway", g)?;
                let name = raw.link.server_name.clone().unwrap_or_else(|| host.clone());
                Ok((host, port, name))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let (gateway_host, gateway_port) = (gateways[0].0.clone(), gateways[0].1);
        let file = |key, p: &Path| {
            existing(
                path,
                key,
                resolve(dir, p),
                "copy the clinic bundle (cert.pem, key.pem, ca.pem) from `certs clinic` there or fix the path",
            )
        };
        let routine = routine_limit(path, &raw.link)?;
        let link = LinkConfig {
            server_name: raw.link.server_name.unwrap_or_else(|| gateway_host.clone()),
            gateway_host,
            gateway_port,
            gateways,
            cert: file("[link] cert", &raw.link.cert)?,
            key: file("[link] key", &raw.link.key)?,
            ca: file("[link] ca", &raw.link.ca)?,
            backoff: BackoffConfig {
                initial: Duration::from_millis(raw.link.reconnect_initial_ms.unwrap_or(500).max(1)),
                max: secs(raw.link.reconnect_max_secs, 30),
            },
            keep_alive: secs(raw.link.keep_alive_secs, 5),
            idle_timeout: secs(raw.link.idle_timeout_secs, 60),
            heartbeat: secs(raw.link.heartbeat_secs, 5),
            handshake_timeout: secs(raw.link.handshake_timeout_secs, 15),
            upload_limit: raw
                .link
                .upload_limit_kib_per_sec
                .filter(|k| *k > 0)
                // Saturating: TOML allows numbers whose KiB overflow a byte count (found by the
                // fuzz targets); such a limit is no limit.
                .map(|k| k.saturating_mul(1024)),
            routine,
        };
        let ae_title = raw
            .dicom
            .ae_title
            .unwrap_or_else(|| DEFAULT_AE_TITLE.into());
        check_ae_title(path, "[dicom] ae_title", &ae_title)?;
        let case_prefix = raw
            .clinic
            .case_prefix
            .as_deref()
            .map(|text| {
                proto::find::CaseNumber::check_prefix(text).map_err(|problem| ConfigValueError {
                    file: path.display().to_string(),
                    key: "[clinic] case_prefix".into(),
                    value: text.into(),
                    problem,
                })
            })
            .transpose()?;
        let allowed = raw.dicom.allowed_calling_ae_titles.unwrap_or_default();
        for title in &allowed {
            check_ae_title(path, "[dicom] allowed_calling_ae_titles", title)?;
        }
        Ok(Self {
            file: path.to_path_buf(),
            data_dir: resolve(
                dir,
                raw.data_dir.as_deref().unwrap_or(Path::new("agent-data")),
            ),
            link,
            dicom: DicomConfig {
                listen: listen_addr(
                    path,
                    "[dicom] listen",
                    raw.dicom.listen.as_deref().unwrap_or(DEFAULT_DICOM_LISTEN),
                )?,
                ae_title,
                allowed_calling_ae_titles: allowed.iter().map(|t| t.trim().to_owned()).collect(),
                idle_timeout: std::time::Duration::from_secs(
                    raw.dicom.idle_timeout_secs.unwrap_or(60).max(1),
                ),
                max_associations_per_peer: raw
                    .dicom
                    .max_associations_per_peer
                    .unwrap_or(8)
                    .clamp(1, 32),
            },
            web_listen: listen_addr(
                path,
                "[web] listen",
                raw.web.listen.as_deref().unwrap_or(DEFAULT_WEB_LISTEN),
            )?,
            metrics_listen: listen_addr(
                path,
                "[metrics] listen",
                raw.metrics
                    .listen
                    .as_deref()
                    .unwrap_or(DEFAULT_METRICS_LISTEN),
            )?,
            case_prefix,
        })
    }
}

/// DICOM PS3.5 §6.2: an AE title is 1 to 16 characters of the default repertoire, without
/// backslash or control characters; leading and trailing spaces are not significant.
/// `[link] routine_limit_kib_per_sec`, `full_rate_hours` and `utc_offset`, checked together.
fn routine_limit(file: &Path, link: &RawLink) -> Result<Option<RoutineLimit>, ConfigValueError> {
    let bad = |key: &str, value: &str, problem: String| ConfigValueError {
        file: file.display().to_string(),
        key: format!("[link] {key}"),
        value: value.into(),
        problem,
    };
    let full_rate = link
        .full_rate_hours
        .as_deref()
        .map(|text| {
            proto::hours::DailyWindow::parse(text).map_err(|why| {
                bad(
                    "full_rate_hours",
                    text,
                    format!("{why}; write the local hours of full rate like \"20:00-07:00\""),
                )
            })
        })
        .transpose()?;
    let utc_offset_secs =
        match link.utc_offset.as_deref() {
            Some(text) => proto::hours::parse_utc_offset(text)
                .map_err(|why| bad("utc_offset", text, format!("{why}; China is \"+08:00\"")))?,
            None if full_rate.is_some() => return Err(bad(
                "full_rate_hours",
                link.full_rate_hours.as_deref().unwrap_or_default(),
                "needs utc_offset (e.g. utc_offset = \"+08:00\") to know the clinic's local time"
                    .into(),
            )),
            None => 0,
        };
    match link.routine_limit_kib_per_sec {
        Some(kib) if kib > 0 => Ok(Some(RoutineLimit {
            bytes_per_sec: kib.saturating_mul(1024),
            full_rate,
            utc_offset_secs,
        })),
        _ if full_rate.is_some() => Err(bad(
            "full_rate_hours",
            link.full_rate_hours.as_deref().unwrap_or_default(),
            "has no effect without routine_limit_kib_per_sec (the routine rate outside those hours)"
                .into(),
        )),
        _ => Ok(None),
    }
}

fn check_ae_title(file: &Path, key: &str, title: &str) -> Result<(), ConfigValueError> {
    let trimmed = title.trim();
    let ok = !trimmed.is_empty()
        && title.len() <= 16
        && title
            .chars()
            .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\');
    if ok {
        Ok(())
    } else {
        Err(ConfigValueError {
            file: file.display().to_string(),
            key: key.into(),
            value: title.into(),
            problem: "is not a DICOM AE title; use 1 to 16 ASCII characters without '\\', e.g. \"TPG_AGENT\"".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bundle")).unwrap();
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.path().join("bundle").join(f), "x").unwrap();
        }
        dir
    }

    const MINIMAL: &str = r#"
        [link]
        gateway = "gw.hospital.example:4433"
        cert = "bundle/cert.pem"
        key = "bundle/key.pem"
        ca = "bundle/ca.pem"
    "#;

    #[test]
    fn minimal_file_gets_defaults() {
        let dir = bundle();
        let c = AgentConfig::parse(&dir.path().join("agent.toml"), MINIMAL).unwrap();
        assert_eq!(c.link.gateway_host, "gw.hospital.example");
        assert_eq!(c.link.server_name, "gw.hospital.example");
        assert_eq!(c.link.gateway_port, 4433);
        assert_eq!(c.link.ca, dir.path().join("bundle/ca.pem"));
        assert_eq!(c.link.backoff.max, Duration::from_secs(30));
        assert_eq!(c.dicom.ae_title, "TPG_AGENT");
        assert_eq!(c.dicom.listen.port(), 11112);
    }

    #[test]
    fn several_gateway_nodes_each_with_its_own_name() {
        let dir = bundle();
        let file = dir.path().join("agent.toml");
        let two = MINIMAL.replace(
            "gateway = \"gw.hospital.example:4433\"",
            "gateway = [\"gw-a.hospital.example:4433\", \"10.1.2.3:4434\"]",
        );
        let c = AgentConfig::parse(&file, &two).unwrap();
        assert_eq!(
            c.link.gateways,
            [
                (
                    "gw-a.hospital.example".to_owned(),
                    4433,
                    "gw-a.hospital.example".to_owned()
                ),
                ("10.1.2.3".to_owned(), 4434, "10.1.2.3".to_owned()),
            ]
        );
        assert_eq!(c.link.gateway_host, "gw-a.hospital.example");
        let none = MINIMAL.replace("gateway = \"gw.hospital.example:4433\"", "gateway = []");
        let e = AgentConfig::parse(&file, &none).unwrap_err().to_string();
        assert!(e.contains("[link] gateway"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = bundle();
        let f = dir.path().join("agent.toml");
        let e = AgentConfig::parse(&f, &MINIMAL.replace(":4433", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("agent.toml: [link] gateway = \"gw.hospital.example\" has no port"),
            "{e}"
        );

        let e = AgentConfig::parse(
            &f,
            &format!("{MINIMAL}\n[dicom]\nae_title = \"A_TITLE_MUCH_TOO_LONG\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[dicom] ae_title") && e.contains("1 to 16"),
            "{e}"
        );

        let e = AgentConfig::parse(&f, &format!("{MINIMAL}\n[web]\nport = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `port`"), "{e}");

        std::fs::remove_file(dir.path().join("bundle/key.pem")).unwrap();
        let e = AgentConfig::parse(&f, MINIMAL).unwrap_err().to_string();
        assert!(
            e.contains("[link] key names") && e.contains("certs clinic"),
            "{e}"
        );
    }

    #[test]
    fn a_case_prefix_is_a_short_code_and_a_bad_one_names_its_key() {
        let dir = bundle();
        let f = dir.path().join("agent.toml");
        let with = |table: &str| AgentConfig::parse(&f, &format!("{MINIMAL}\n{table}\n"));
        assert_eq!(with("").unwrap().case_prefix, None);
        let c = with("[clinic]\ncase_prefix = \"jz\"").unwrap();
        assert_eq!(c.case_prefix.as_deref(), Some("JZ"));
        let e = with("[clinic]\ncase_prefix = \"J-Z\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[clinic] case_prefix"), "{e}");
        assert!(e.contains("1 to 6 letters or digits"), "{e}");
    }

    #[test]
    fn the_routine_limit_and_its_full_rate_hours_are_checked_together() {
        let dir = bundle();
        let f = dir.path().join("agent.toml");
        let with = |keys: &str| {
            AgentConfig::parse(
                &f,
                &MINIMAL.replace("[link]\n", &format!("[link]\n{keys}\n")),
            )
        };
        assert_eq!(with("").unwrap().link.routine, None);
        let c = with(
            "routine_limit_kib_per_sec = 64\nfull_rate_hours = \"20:00-07:00\"\nutc_offset = \"+08:00\"",
        )
        .unwrap();
        let routine = c.link.routine.unwrap();
        assert_eq!(routine.bytes_per_sec, 64 * 1024);
        assert_eq!(routine.utc_offset_secs, 8 * 3600);
        assert_eq!(routine.full_rate.unwrap().to_string(), "20:00–07:00");
        // All day when no hours are given.
        let c = with("routine_limit_kib_per_sec = 64").unwrap();
        assert_eq!(c.link.routine.unwrap().full_rate, None);

        let e = with("full_rate_hours = \"20:00-07:00\"\nutc_offset = \"+08:00\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[link] full_rate_hours") && e.contains("routine_limit_kib_per_sec"),
            "{e}"
        );
        let e = with("routine_limit_kib_per_sec = 64\nfull_rate_hours = \"20:00-07:00\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs utc_offset"), "{e}");
        let e = with("routine_limit_kib_per_sec = 64\nfull_rate_hours = \"8pm-7am\"\nutc_offset = \"+08:00\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'8pm' is not HH:MM") && e.contains("20:00-07:00"),
            "{e}"
        );
    }
}
