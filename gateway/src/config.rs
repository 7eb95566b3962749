//! `gateway.toml`: parsed strictly (unknown keys are errors), relative paths resolved against
//! the file's folder, every problem reported with the file and the key. Keys are documented
//! in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon::config::{self, existing, secs, ConfigError};
use proto::config::{listen_addr, resolve};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    min_free_mib: Option<u64>,
    link: RawLink,
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    metrics: RawListen,
    routing: Option<RawRouting>,
    #[serde(default)]
    alerts: AlertsConfig,
    #[serde(default, rename = "forward")]
    forwards: Vec<RawForward>,
    #[serde(default)]
    storage: RawStorage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    index: Option<String>,
    schema: Option<String>,
    connections: Option<usize>,
    objects: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<PathBuf>,
}

/// `[storage] credentials`: a file holding the bucket's access key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    access_key_id: String,
    secret_access_key: String,
}

/// `[storage]`: where the gateway keeps its index, events, accounts, audit log and
/// coordination. Without it, the embedded default: everything in `data_dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageConfig {
    /// `[storage] index = "postgres://…"` (or `TPG_STORAGE_INDEX` in the environment, which
    /// keeps a password out of the file): the PostgreSQL database every node shares.
    pub index: Option<String>,
    /// `[storage] schema`: the schema in it (`tpg` by default).
    pub schema: String,
    /// `[storage] connections`: connections each node opens (8 by default).
    pub connections: usize,
    /// `[storage] objects = "s3://bucket[/folder]"` with `endpoint`, `region` and the key
    /// (`credentials`, or `TPG_S3_ACCESS_KEY_ID` and `TPG_S3_SECRET_ACCESS_KEY`): the bucket
    /// every node shares; `None` keeps the objects in `data_dir`.
    pub objects: Option<store::objects::s3::S3Config>,
}

/// `[storage] objects` and what goes with it, checked: a bucket URL, an endpoint URL, a key
/// from the environment or a file.
fn object_storage(
    path: &Path,
    raw: &RawStorage,
) -> Result<Option<store::objects::s3::S3Config>, ConfigError> {
    let bad = |message: String| ConfigError::Parse {
        path: path.display().to_string(),
        message,
    };
    let Some(url) = &raw.objects else {
        if let Some(key) = [
            raw.endpoint.as_ref().map(|_| "endpoint"),
            raw.region.as_ref().map(|_| "region"),
            raw.credentials.as_ref().map(|_| "credentials"),
        ]
        .into_iter()
        .flatten()
        .next()
        {
            return Err(bad(format!("[storage] {key} is set but [storage] objects is not: name the bucket (objects = \"s3://bucket\"), or remove {key} to keep the objects in data_dir")));
        }
        return Ok(None);
    };
    let Some((bucket, prefix)) = store::objects::s3::S3Config::parse_url(url) else {
        return Err(bad(format!("[storage] objects = \"{url}\" is not a bucket: write s3://bucket or s3://bucket/folder (a bucket name is 3–63 lower-case letters, digits, dots and hyphens); leave it out to keep the objects in data_dir")));
    };
    if let Some(endpoint) = &raw.endpoint {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(bad(format!("[storage] endpoint = \"{endpoint}\" must be the S3 API's URL, e.g. \"https://s3.hospital.internal:3900\"")));
        }
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (access_key_id, secret_access_key) = match &raw.credentials {
        Some(file) => {
            let file = &resolve(path.parent().unwrap_or(Path::new(".")), file);
            let text = std::fs::read_to_string(file).map_err(|e| {
                bad(format!("[storage] credentials = \"{}\": cannot read it ({e}); name a file holding access_key_id and secret_access_key", file.display()))
            })?;
            let c: RawCredentials = toml::from_str(&text).map_err(|e| {
                bad(format!("[storage] credentials = \"{}\": {}; the file holds access_key_id = \"…\" and secret_access_key = \"…\"", file.display(), e.message()))
            })?;
            (c.access_key_id, c.secret_access_key)
        }
        None => match (
            env("TPG_S3_ACCESS_KEY_ID").or_else(|| env("AWS_ACCESS_KEY_ID")),
            env("TPG_S3_SECRET_ACCESS_KEY").or_else(|| env("AWS_SECRET_ACCESS_KEY")),
        ) {
            (Some(id), Some(secret)) => (id, secret),
            _ => return Err(bad("[storage] objects names a bucket but no key to it: set TPG_S3_ACCESS_KEY_ID and TPG_S3_SECRET_ACCESS_KEY in the environment, or [storage] credentials = a file holding access_key_id and secret_access_key".into())),
        },
    };
    Ok(Some(store::objects::s3::S3Config {
        bucket,
        prefix,
        endpoint: raw.endpoint.clone(),
        region: raw.region.clone().unwrap_or_else(|| "us-east-1".into()),
        access_key_id,
        secret_access_key,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    name: String,
    ae_title: String,
    address: String,
    calling_ae: Option<String>,
    associations: Option<usize>,
    modalities: Option<Vec<String>>,
    clinics: Option<Vec<String>>,
    retry_max_secs: Option<u64>,
    patient_ids: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    file: PathBuf,
    check_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    listen: Option<String>,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    crl: PathBuf,
    crl_reload_secs: Option<u64>,
    keep_alive_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    heartbeat_secs: Option<u64>,
    handshake_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    listen: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    /// The hospital's time zone, for the times the pages show: `+08:00`.
    utc_offset: Option<String>,
    /// OHIF's prepared `dist/` folder (`scripts/ohif`), served under `/ohif/`.
    ohif: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The file this configuration came from.
    pub file: PathBuf,
    pub data_dir: PathBuf,
    /// Space kept free on `data_dir`'s file system: uploads that would eat into it are refused
    /// (and sent again later), so the index always has room to write.
    pub min_free_bytes: u64,
    pub link: LinkConfig,
    pub web_listen: SocketAddr,
    /// `[web] cert` and `key`: serve the web pages and API over HTTPS with this certificate.
    pub web_tls: Option<WebTls>,
    /// `[web] utc_offset`: the pages show times in the hospital's time zone (seconds east of
    /// UTC; China's `+08:00` by default).
    pub web_utc_offset_secs: i64,
    /// `[web] ohif`: OHIF's files, prepared for `/ohif/` by `scripts/ohif`; the case page then
    /// opens each study in it.
    pub web_ohif: Option<PathBuf>,
    pub metrics_listen: SocketAddr,
    /// `[routing]`: assign consultations automatically; without it an administrator does.
    pub routing: Option<RoutingConfig>,
    /// `[alerts]`: thresholds of the administrator's alerts page.
    pub alerts: AlertsConfig,
    /// `[[forward]]`: hospital PACS destinations every verified instance is sent to.
    pub forwards: Vec<ForwardConfig>,
    /// `[storage]`: the embedded default, or PostgreSQL.
    pub storage: StorageConfig,
}

/// One PACS destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Names the destination in metrics, on the board and in the queue (letters, digits,
    /// `-`, `_`).
    pub name: String,
    pub peer: daemon::scu::Peer,
    /// Associations sending at once.
    pub associations: usize,
    /// Only these modalities (none: all).
    pub modalities: Option<Vec<String>>,
    /// Only these clinics (none: all).
    pub clinics: Option<Vec<String>>,
    /// The longest wait between attempts while the destination fails.
    pub retry_max: Duration,
    /// How the clinics' own patient ids are told apart at this destination.
    pub patient_ids: PatientIds,
}

/// Patient ids are the clinics' own: two clinics' "P-1" are two people. What a shared PACS
/// receives so that it keeps them apart (the stored originals are never changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatientIds {
    /// Issuer of Patient ID (0010,0021) set to the clinic, and the id prefixed with it
    /// (`jinzhou-P-1`): for PACS that key patients by the id alone, as most do.
    #[default]
    Prefix,
    /// Only Issuer of Patient ID set to the clinic: for PACS that key by id and issuer.
    Issuer,
    /// Sent as stored: only for a PACS that serves one clinic.
    AsIs,
}

/// The calling AE title the gateway uses when a destination names none.
pub const DEFAULT_CALLING_AE: &str = "TPG_GATEWAY";

/// `[alerts]` thresholds; every key has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// A clinic offline longer than this is an alert.
    pub link_down_minutes: u64,
    /// A clinic whose oldest undelivered item is older than this (default: the routine
    /// consultation SLA).
    pub backlog_age_minutes: Option<u64>,
    /// A clinic certificate expiring within this many days.
    pub cert_expiry_days: u64,
    /// The data folder's file system this full (percent).
    pub disk_percent: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            link_down_minutes: 15,
            backlog_age_minutes: None,
            cert_expiry_days: 30,
            disk_percent: 90,
        }
    }
}

/// The web listener's certificate chain and key (PEM).
#[derive(Debug, Clone)]
pub struct WebTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// `routing.toml`: specialists, pools, rules, SLAs (reloaded when it changes).
    pub file: PathBuf,
    /// How often escalations and roster changes are checked.
    pub check: Duration,
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub crl: PathBuf,
    /// How often `crl` (and the certificate files) are checked for changes.
    pub crl_reload: Duration,
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
    pub heartbeat: Duration,
    pub handshake_timeout: Duration,
}

pub const DEFAULT_LINK_LISTEN: &str = "0.0.0.0:4433";
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9100";

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_raw(path, config::read(path)?)
    }

    /// Parses `text` as if read from `path` (relative paths resolve against its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::from_raw(path, config::parse(path, text)?)
    }

    fn from_raw(path: &Path, raw: RawConfig) -> Result<Self, ConfigError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let link = LinkConfig {
            listen: listen_addr(
                path,
                "[link] listen",
                raw.link.listen.as_deref().unwrap_or(DEFAULT_LINK_LISTEN),
            )?,
            cert: existing(
                path,
                "[link] cert",
                resolve(dir, &raw.link.cert),
                "issue it with `certs gateway`",
            )?,
            key: existing(
                path,
                "[link] key",
                resolve(dir, &raw.link.key),
                "issue it with `certs gateway`",
            )?,
            ca: existing(
                path,
                "[link] ca",
                resolve(dir, &raw.link.ca),
                "create the CA with `certs init`",
            )?,
            crl: existing(
                path,
                "[link] crl",
                resolve(dir, &raw.link.crl),
                "`certs init` writes crl.pem beside ca.pem",
            )?,
            crl_reload: secs(raw.link.crl_reload_secs, 10),
            keep_alive: secs(raw.link.keep_alive_secs, 5),
            idle_timeout: secs(raw.link.idle_timeout_secs, 60),
            heartbeat: secs(raw.link.heartbeat_secs, 5),
            handshake_timeout: secs(raw.link.handshake_timeout_secs, 15),
        };
        Ok(Self {
            file: path.to_path_buf(),
            data_dir: resolve(
                dir,
                raw.data_dir.as_deref().unwrap_or(Path::new("gateway-data")),
            ),
            min_free_bytes: raw.min_free_mib.unwrap_or(256).saturating_mul(1024 * 1024),
            link,
            web_listen: listen_addr(
                path,
                "[web] listen",
                raw.web.listen.as_deref().unwrap_or(DEFAULT_WEB_LISTEN),
            )?,
            storage: {
                let index = std::env::var("TPG_STORAGE_INDEX")
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .or(raw.storage.index.clone());
                if let Some(url) = &index {
                    if !(url.starts_with("postgres://")
                        || url.starts_with("postgresql://")
                        || url.contains("host="))
                    {
                        return Err(ConfigError::Parse {
                            path: path.display().to_string(),
                            message: "[storage] index must be a PostgreSQL connection string (postgres://user@host/db, or host=… dbname=…); leave it out for the embedded index in data_dir".into(),
                        });
                    }
                }
                StorageConfig {
                    index,
                    schema: raw.storage.schema.clone().unwrap_or_else(|| "tpg".into()),
                    connections: raw.storage.connections.unwrap_or(8).clamp(1, 64),
                    objects: object_storage(path, &raw.storage)?,
                }
            },
            web_utc_offset_secs: match raw.web.utc_offset.as_deref() {
                None => 8 * 3600,
                Some(text) => {
                    proto::hours::parse_utc_offset(text).map_err(|why| ConfigError::Parse {
                        path: path.display().to_string(),
                        message: format!("[web] utc_offset = \"{text}\": {why}; write the hospital's time zone, e.g. \"+08:00\""),
                    })?
                }
            },
            web_ohif: match &raw.web.ohif {
                None => None,
                Some(folder) => Some(existing(
                    path,
                    "[web] ohif",
                    resolve(dir, folder).join("index.html"),
                    "prepare OHIF there with `scripts/ohif FOLDER` (it fetches the pinned \
                     @ohif/app from npm), or leave [web] ohif out",
                )?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()),
            },
            web_tls: match (raw.web.cert, raw.web.key) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some(WebTls {
                    cert: existing(
                        path,
                        "[web] cert",
                        resolve(dir, &cert),
                        "issue one with `certs gateway` (or use the hospital's own)",
                    )?,
                    key: existing(
                        path,
                        "[web] key",
                        resolve(dir, &key),
                        "it is issued with the certificate",
                    )?,
                }),
                _ => {
                    return Err(ConfigError::Parse {
                        path: path.display().to_string(),
                        message: "[web] cert and [web] key go together: set both to serve \
                                  HTTPS, or neither to serve plain HTTP"
                            .into(),
                    })
                }
            },
            metrics_listen: listen_addr(
                path,
                "[metrics] listen",
                raw.metrics
                    .listen
                    .as_deref()
                    .unwrap_or(DEFAULT_METRICS_LISTEN),
            )?,
            routing: match raw.routing {
                Some(r) => Some(RoutingConfig {
                    file: existing(
                        path,
                        "[routing] file",
                        resolve(dir, &r.file),
                        "write the roster (docs/configuration.md, \"routing.toml\")",
                    )?,
                    check: secs(r.check_secs, 30),
                }),
                None => None,
            },
            alerts: raw.alerts,
            forwards: forwards(path, raw.forwards)?,
        })
    }
}

fn forwards(path: &Path, raw: Vec<RawForward>) -> Result<Vec<ForwardConfig>, ConfigError> {
    let bad = |message: String| ConfigError::Parse {
        path: path.display().to_string(),
        message,
    };
    let ae_ok = |ae: &str| !ae.trim().is_empty() && ae.len() <= 16 && ae.is_ascii();
    let mut out: Vec<ForwardConfig> = Vec::new();
    for f in raw {
        let name = f.name.trim().to_owned();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(format!(
                "[[forward]] name = {:?}: use letters, digits, '-' and '_'",
                f.name
            )));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(bad(format!("[[forward]] name = {name:?} appears twice")));
        }
        let calling = f
            .calling_ae
            .unwrap_or_else(|| DEFAULT_CALLING_AE.to_owned());
        for (key, ae) in [("ae_title", &f.ae_title), ("calling_ae", &calling)] {
            if !ae_ok(ae) {
                return Err(bad(format!(
                    "[[forward]] {name}: {key} = {ae:?} is not an AE title (1 to 16 ASCII characters)"
                )));
            }
        }
        let port_ok = f.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(bad(format!(
                "[[forward]] {name}: address = {:?} must be host:port, e.g. \"10.1.2.3:104\"",
                f.address
            )));
        }
        let patient_ids = match f.patient_ids.as_deref() {
            None | Some("prefix") => PatientIds::Prefix,
            Some("issuer") => PatientIds::Issuer,
            Some("as_is") => PatientIds::AsIs,
            Some(other) => {
                return Err(bad(format!(
                    "[[forward]] {name}: patient_ids = {other:?}: use \"prefix\" (the default), \"issuer\" or \"as_is\""
                )))
            }
        };
        out.push(ForwardConfig {
            patient_ids,
            peer: daemon::scu::Peer {
                ae_title: f.ae_title.trim().to_owned(),
                address: f.address,
                calling_ae: calling.trim().to_owned(),
            },
            name,
            associations: f.associations.unwrap_or(2).clamp(1, 16),
            modalities: f.modalities,
            clinics: f.clinics,
            retry_max: secs(f.retry_max_secs, 300),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_pki_files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in ["cert.pem", "key.pem", "ca.pem", "crl.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        dir
    }

    const MINIMAL: &str = r#"
        [link]
        cert = "cert.pem"
        key = "key.pem"
        ca = "ca.pem"
        crl = "crl.pem"
    "#;

    #[test]
    fn minimal_file_gets_defaults_and_paths_relative_to_its_folder() {
        let dir = with_pki_files();
        let file = dir.path().join("gateway.toml");
        let c = GatewayConfig::parse(&file, MINIMAL).unwrap();
        assert_eq!(c.link.cert, dir.path().join("cert.pem"));
        assert_eq!(c.data_dir, dir.path().join("gateway-data"));
        assert_eq!(c.min_free_bytes, 256 * 1024 * 1024, "the default reserve");
        assert_eq!(c.link.listen.to_string(), DEFAULT_LINK_LISTEN);
        assert_eq!(c.metrics_listen.to_string(), DEFAULT_METRICS_LISTEN);
        assert_eq!(c.link.idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn forward_destinations_are_checked_and_get_defaults() {
        let dir = with_pki_files();
        let file = dir.path().join("gateway.toml");
        let text = format!(
            "{MINIMAL}\n[[forward]]\nname = \"pacs\"\nae_title = \"HOSP_PACS\"\naddress = \"10.1.2.3:104\"\nmodalities = [\"CT\"]\n"
        );
        let c = GatewayConfig::parse(&file, &text).unwrap();
        let f = &c.forwards[0];
        assert_eq!((f.name.as_str(), f.associations), ("pacs", 2));
        assert_eq!(f.peer.calling_ae, DEFAULT_CALLING_AE);
        assert_eq!(f.modalities.as_deref(), Some(&["CT".to_owned()][..]));
        for (wrong, says) in [
            ("10.1.2.3", "must be host:port"),
            ("10.1.2.3:0", "must be host:port"),
        ] {
            let e = GatewayConfig::parse(&file, &text.replace("10.1.2.3:104", wrong))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{e}");
        }
        let e = GatewayConfig::parse(&file, &text.replace("HOSP_PACS", "A_TITLE_FAR_TOO_LONG"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not an AE title"), "{e}");
        let twice = format!("{text}{}", &text[MINIMAL.len()..]);
        let e = GatewayConfig::parse(&file, &twice).unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");
    }

    #[test]
    fn web_certificate_needs_its_key() {
        let dir = with_pki_files();
        let file = dir.path().join("gateway.toml");
        let plain = GatewayConfig::parse(&file, MINIMAL).unwrap();
        assert!(plain.web_tls.is_none());
        let both = format!("{MINIMAL}\n[web]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n");
        let tls = GatewayConfig::parse(&file, &both).unwrap().web_tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("cert.pem"));
        let alone = format!("{MINIMAL}\n[web]\ncert = \"cert.pem\"\n");
        let e = GatewayConfig::parse(&file, &alone).unwrap_err().to_string();
        assert!(e.contains("[web] cert and [web] key go together"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let dir = with_pki_files();
        let file = dir.path().join("gateway.toml");
        let text = MINIMAL.replace("crl = ", "crl_path = \"x\"\ncrl = ");
        let e = GatewayConfig::parse(&file, &text).unwrap_err().to_string();
        assert!(
            e.contains("gateway.toml") && e.contains("unknown field `crl_path`"),
            "{e}"
        );
    }

    #[test]
    fn bad_address_and_missing_file_name_the_key() {
        let dir = with_pki_files();
        let file = dir.path().join("gateway.toml");
        let text = format!("{MINIMAL}\n[metrics]\nlisten = \"localhost\"\n");
        let e = GatewayConfig::parse(&file, &text).unwrap_err().to_string();
        assert!(
            e.contains("[metrics] listen = \"localhost\" is not a listening address"),
            "{e}"
        );

        std::fs::remove_file(dir.path().join("crl.pem")).unwrap();
        let e = GatewayConfig::parse(&file, MINIMAL)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[link] crl names") && e.contains("does not exist"),
            "{e}"
        );
    }

    #[test]
    fn storage_is_embedded_unless_a_postgresql_index_is_named() {
        let dir = with_pki_files();
        let file = dir.path().join("gateway.toml");
        let c = GatewayConfig::parse(&file, MINIMAL).unwrap();
        if std::env::var("TPG_STORAGE_INDEX").is_err() {
            assert_eq!(c.storage.index, None, "the embedded default");
        }
        assert_eq!(
            (c.storage.schema.as_str(), c.storage.connections),
            ("tpg", 8)
        );
        let pg = format!(
            "{MINIMAL}\n[storage]\nindex = \"postgres://tpg@db/city\"\nschema = \"city\"\nconnections = 500\n"
        );
        let c = GatewayConfig::parse(&file, &pg).unwrap();
        assert_eq!(c.storage.schema, "city");
        assert_eq!(c.storage.connections, 64, "bounded");
        let bad = format!("{MINIMAL}\n[storage]\nindex = \"/var/lib/tpg\"\n");
        if std::env::var("TPG_STORAGE_INDEX").is_err() {
            let e = GatewayConfig::parse(&file, &bad).unwrap_err().to_string();
            assert!(
                e.contains("[storage] index") && e.contains("embedded"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_bucket_for_the_objects_is_checked_naming_the_key_and_the_fix() {
        let dir = with_pki_files();
        let file = dir.path().join("gateway.toml");
        let parse = |storage: &str| {
            GatewayConfig::parse(&file, &format!("{MINIMAL}\n[storage]\n{storage}\n"))
                .map_err(|e| e.to_string())
        };
        std::fs::write(
            dir.path().join("bucket-key.toml"),
            "access_key_id = \"GK1\"\nsecret_access_key = \"s3cr3t\"\n",
        )
        .unwrap();
        let c = parse(
            "objects = \"s3://tpg-images/city\"\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\ncredentials = \"bucket-key.toml\"",
        )
        .unwrap();
        let bucket = c.storage.objects.unwrap();
        assert_eq!(
            (
                bucket.bucket.as_str(),
                bucket.prefix.as_str(),
                bucket.region.as_str()
            ),
            ("tpg-images", "city", "garage")
        );
        assert_eq!(bucket.access_key_id, "GK1");
        assert!(
            !format!("{bucket:?}").contains("s3cr3t"),
            "the secret is never shown"
        );
        assert_eq!(c.storage.index, None, "independent of the index");
        for (storage, names) in [
            ("objects = \"/srv/objects\"", "[storage] objects"),
            ("objects = \"s3://Bad_Bucket\"", "s3://bucket"),
            ("endpoint = \"http://127.0.0.1:3900\"", "[storage] objects is not"),
            (
                "objects = \"s3://tpg\"\nendpoint = \"127.0.0.1:3900\"\ncredentials = \"bucket-key.toml\"",
                "[storage] endpoint",
            ),
            (
                "objects = \"s3://tpg\"\ncredentials = \"missing.toml\"",
                "[storage] credentials",
            ),
        ] {
            let e = parse(storage).unwrap_err();
            assert!(e.contains(names), "{storage}: {e}");
        }
        if std::env::var("TPG_S3_ACCESS_KEY_ID").is_err()
            && std::env::var("AWS_ACCESS_KEY_ID").is_err()
        {
            let e = parse("objects = \"s3://tpg\"").unwrap_err();
            assert!(e.contains("TPG_S3_ACCESS_KEY_ID"), "{e}");
        }
    }

    #[test]
    fn missing_config_file_says_so() {
        let e = GatewayConfig::load(Path::new("/nonexistent/gateway.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read config file /nonexistent/gateway.toml"),
            "{e}"
        );
    }
}
