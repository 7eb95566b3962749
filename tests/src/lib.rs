//! A whole pilot on loopback: a fresh PKI, a gateway and clinic agents started in-process from
//! real configuration files, and helpers to read their metrics. The integration tests and the
//! `pilot` binary (the pilot in a box) are both built on it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use certs::pki::{Pki, Validity};
use clinic_agent::{AgentConfig, LinkOptions};
use gateway::GatewayConfig;
use proto::ClinicId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod bench;
pub mod emulator;
pub mod garage;
pub mod hostile;
pub mod kills;
pub mod netns;
pub mod peers;
pub mod people;
pub mod postgres;
pub mod relay;
pub mod samples;
pub mod tcp_contenders;
pub mod webdriver;

/// Timings for a pilot on one machine: fast heartbeats, quick reconnects, CRL checked every
/// second, so the tests and the demo see changes at once.
#[derive(Debug, Clone)]
pub struct Timings {
    pub heartbeat_secs: u64,
    pub idle_timeout_secs: u64,
    pub crl_reload_secs: u64,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_secs: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            heartbeat_secs: 1,
            idle_timeout_secs: 10,
            crl_reload_secs: 1,
            reconnect_initial_ms: 100,
            reconnect_max_secs: 1,
        }
    }
}

/// A pilot's folder: `pki/`, `gateway/gateway.toml`, `clinics/<id>/agent.toml`.
#[derive(Debug)]
pub struct PilotDir {
    pub root: PathBuf,
    pub timings: Timings,
}

impl PilotDir {
    /// Creates the PKI (CA, gateway certificate for localhost/127.0.0.1) unless it exists.
    pub fn create(root: &Path, timings: Timings) -> anyhow::Result<Self> {
        let pki_dir = root.join("pki");
        if !pki_dir.join("ca.pem").exists() {
            let mut pki = Pki::init(&pki_dir, certs::pki::DEFAULT_CA_NAME, 30, false)?;
            pki.issue_gateway(
                &["localhost".into()],
                &["127.0.0.1".parse()?],
                Validity::days_from_now(30)?,
                false,
            )?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            timings,
        })
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }

    pub fn pki(&self) -> anyhow::Result<Pki> {
        Ok(Pki::open(&self.pki_dir())?)
    }

    /// Issues a clinic bundle (valid 30 days) unless one exists.
    pub fn enrol(&self, clinic: &str, name: &str) -> anyhow::Result<PathBuf> {
        let bundle = self.pki_dir().join("clinics").join(clinic);
        if !bundle.join("cert.pem").exists() {
            self.pki()?.issue_clinic(
                &ClinicId::new(clinic)?,
                Some(name),
                Validity::days_from_now(30)?,
                false,
            )?;
        }
        Ok(bundle)
    }

    /// Writes `gateway/gateway.toml` listening on `link` (UDP) and loads it.
    pub fn gateway_config(&self, link: SocketAddr) -> anyhow::Result<GatewayConfig> {
        self.gateway_config_with(link, "")
    }

    /// Like [`Self::gateway_config`], with `web` added to the `[web]` table (one key per line).
    pub fn gateway_config_with(
        &self,
        link: SocketAddr,
        web: &str,
    ) -> anyhow::Result<GatewayConfig> {
        let t = &self.timings;
        let path = self.root.join("gateway").join("gateway.toml");
        write(
            &path,
            &format!(
                r#"# Written by the pilot harness; see docs/configuration.md.
data_dir = "data"
# A test writes little; a nearly full disk on a developer's machine must not stop it.
min_free_mib = 16

[link]
listen = "{link}"
cert = "../pki/gateway/cert.pem"
key = "../pki/gateway/key.pem"
ca = "../pki/ca.pem"
crl = "../pki/crl.pem"
crl_reload_secs = {crl}
heartbeat_secs = {hb}
idle_timeout_secs = {idle}
keep_alive_secs = 1

[web]
listen = "127.0.0.1:0"
{web}

[metrics]
listen = "127.0.0.1:0"
"#,
                crl = t.crl_reload_secs,
                hb = t.heartbeat_secs,
                idle = t.idle_timeout_secs,
            ),
        )?;
        Ok(GatewayConfig::load(&path)?)
    }

    /// Writes `clinics/<id>/agent.toml` using the bundle at `bundle` and loads it.
    pub fn agent_config(
        &self,
        clinic: &str,
        bundle: &Path,
        gateway: SocketAddr,
    ) -> anyhow::Result<AgentConfig> {
        self.agent_config_with(clinic, bundle, gateway, "", "")
    }

    /// Like [`PilotDir::agent_config`], with extra `[link]` and `[dicom]` keys (TOML lines).
    pub fn agent_config_with(
        &self,
        clinic: &str,
        bundle: &Path,
        gateway: SocketAddr,
        extra_link: &str,
        extra_dicom: &str,
    ) -> anyhow::Result<AgentConfig> {
        let t = &self.timings;
        let path = self.root.join("clinics").join(clinic).join("agent.toml");
        write(
            &path,
            &format!(
                r#"# Written by the pilot harness; see docs/configuration.md.
data_dir = "data"

[link]
gateway = "{gateway}"
server_name = "localhost"
cert = "{b}/cert.pem"
key = "{b}/key.pem"
ca = "{b}/ca.pem"
reconnect_initial_ms = {init}
reconnect_max_secs = {max}
heartbeat_secs = {hb}
idle_timeout_secs = {idle}
keep_alive_secs = 1
{extra_link}

[dicom]
listen = "127.0.0.1:0"
ae_title = "TPG_{ae}"
{extra_dicom}

[web]
listen = "127.0.0.1:0"

[metrics]
listen = "127.0.0.1:0"
"#,
                b = bundle.display(),
                init = t.reconnect_initial_ms,
                max = t.reconnect_max_secs,
                hb = t.heartbeat_secs,
                idle = t.idle_timeout_secs,
                ae = clinic_ae_suffix(clinic),
            ),
        )?;
        Ok(AgentConfig::load(&path)?)
    }
}

fn clinic_ae_suffix(clinic: &str) -> String {
    clinic
        .to_uppercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect()
}

/// The DICOM AE title of a clinic's agent in a pilot folder (`TPG_JINZHOU`).
pub fn clinic_ae_title(clinic: &str) -> String {
    format!("TPG_{}", clinic_ae_suffix(clinic))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A gateway running in this process.
pub struct RunningGateway {
    pub handle: gateway::Handle,
    pub link_addr: SocketAddr,
    pub web_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningGateway {
    pub fn start(config: GatewayConfig) -> anyhow::Result<Self> {
        let listeners = gateway::Listeners::bind(&config)?;
        let link_addr = listeners.link_addr();
        let web_addr = listeners.web_addr();
        let metrics_addr = listeners.metrics_addr();
        let shutdown = CancellationToken::new();
        let (handle, fut) = gateway::start(config, listeners, shutdown.clone())?;
        Ok(Self {
            handle,
            link_addr,
            web_addr,
            metrics_addr,
            shutdown,
            task: tokio::spawn(fut),
        })
    }

    pub fn metrics(&self) -> String {
        scrape(self.metrics_addr).unwrap_or_default()
    }

    /// A stored object as a file, as dicom-rs and the DICOM tools read it.
    pub fn stored_file(&self, id: &proto::sync::ObjectId) -> anyhow::Result<PathBuf> {
        Ok(self
            .handle
            .archive
            .objects()
            .local_file(id)?
            .path()
            .to_path_buf())
    }

    /// A script token of a new administrator of this gateway.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let accounts = &self.handle.accounts;
        if accounts.get("admin")?.is_none() {
            let admin = people::person(
                "admin",
                daemon::accounts::Role::Admin,
                "Administrator",
                None,
                None,
            );
            accounts.add(admin, "pilot-admin-password", false)?;
        }
        Ok(accounts.script_token("admin")?)
    }

    /// Graceful shutdown: every link is closed with the shutdown code.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }
}

/// A clinic agent running in this process.
pub struct RunningAgent {
    pub handle: clinic_agent::Handle,
    pub web_addr: SocketAddr,
    pub dicom_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningAgent {
    pub fn start(config: AgentConfig, options: LinkOptions) -> anyhow::Result<Self> {
        let listeners = clinic_agent::Listeners::bind(&config)?;
        let metrics_addr = listeners.metrics_addr();
        let web_addr = listeners.web_addr();
        let dicom_addr = listeners.dicom_addr();
        let shutdown = CancellationToken::new();
        let (handle, fut) = clinic_agent::start(config, options, listeners, shutdown.clone())?;
        Ok(Self {
            handle,
            web_addr,
            dicom_addr,
            metrics_addr,
            shutdown,
            task: tokio::spawn(fut),
        })
    }

    pub fn metrics(&self) -> String {
        scrape(self.metrics_addr).unwrap_or_default()
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }
}

/// `GET /metrics` over plain HTTP/1.0, as Prometheus or curl would.
pub fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    http_get(addr, "/metrics")
}

/// A plain HTTP/1.0 GET returning the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    ok_body(path, http(addr, "GET", path, None, None)?)
}

/// A GET over HTTP/1.0, with `Authorization: Bearer TOKEN` when given, returning the bytes of
/// a 200 answer's body (an image, a DICOM file).
pub fn http_get_bytes(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, body) = http_get_with(addr, path, &headers)?;
    anyhow::ensure!(
        status == 200,
        "{path}: {status} {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    Ok(body)
}

/// A GET over HTTP/1.0 with `headers`: the status and the body's bytes as they came (still
/// gzipped when the answer is).
pub fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(daemon::client::local(addr))?;
    let mut head = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP answer")?;
    let status = String::from_utf8_lossy(&bytes[..end])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, bytes[end + 4..].to_vec()))
}

/// A GET with `Authorization: Bearer TOKEN`, returning the body of a 200 answer.
pub fn http_get_as(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<String> {
    ok_body(path, http(addr, "GET", path, Some(token), None)?)
}

fn ok_body(path: &str, (status, body): (u16, String)) -> anyhow::Result<String> {
    anyhow::ensure!(status == 200, "{path} answered {status}: {body}");
    Ok(body)
}

/// One HTTP request with an optional bearer token and JSON body, through the daemons' own
/// CLI client: (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    Ok(daemon::client::call_as(addr, method, path, token, json)?)
}

/// Adds a user with a daemon's `user add` command (`daemon` is `gateway` or `clinic-agent`;
/// the password on standard input, as a script would give it) and returns a script token from
/// `user token`.
pub fn user_token(daemon: &str, config: &Path, name: &str, add: &[&str]) -> anyhow::Result<String> {
    let mut adding = std::process::Command::new(binary(daemon))
        .args(["user", "--config"])
        .arg(config)
        .args(["add", name])
        .args(add)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = adding.stdin.take() {
        writeln!(stdin, "{}", people::PASSWORD)?;
    }
    anyhow::ensure!(adding.wait()?.success(), "{daemon} user add {name} failed");
    let out = std::process::Command::new(binary(daemon))
        .args(["user", "--config"])
        .arg(config)
        .args(["token", name])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{daemon} user token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Adds an administrator to the gateway configured by `config` with the `gateway user`
/// commands (as a hospital administrator would) and returns a script token for them.
pub fn gateway_admin_token(config: &Path) -> anyhow::Result<String> {
    user_token(
        "gateway",
        config,
        "admin",
        &[
            "--role",
            "admin",
            "--display-name",
            "Administrator",
            "--replace",
        ],
    )
}

/// Adds the radiologist `li` (roster id `li`, an attending radiologist) to the gateway
/// configured by `config` with the `gateway user` commands and returns a script token for them.
pub fn gateway_radiologist_token(config: &Path) -> anyhow::Result<String> {
    user_token(
        "gateway",
        config,
        "li",
        &[
            "--role",
            "specialist",
            "--display-name",
            "Dr Li",
            "--specialist",
            "li",
            "--qualification",
            "attending radiologist",
        ],
    )
}

/// The value of one sample line, e.g. `metric(&text, "tpg_link_up{clinic=\"a\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Starts a daemon binary (`gateway serve`, `clinic-agent run`) with its data folder on a tmpfs
/// of `size` (e.g. `"6m"`), mounted in a mount namespace of its own that ends with the process:
/// a disk that fills up. The namespace sits in a user namespace, so root is not needed where
/// the kernel lets users create one (Debian's does). The child's pid is the daemon's.
pub fn spawn_on_small_disk(
    name: &str,
    verb: &str,
    config: &Path,
    data_dir: &Path,
    size: &str,
    stderr: std::process::Stdio,
) -> std::process::Child {
    std::fs::create_dir_all(data_dir).expect("data folder");
    std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o "size=$1" tpg-small "$2" && exec "$3" "$4" --config "$5""#)
        .arg("sh")
        .arg(size)
        .arg(data_dir)
        .arg(binary(name))
        .arg(verb)
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("unshare (util-linux) runs")
}

/// Resizes the small disk of a daemon started by [`spawn_on_small_disk`]: room again.
pub fn resize_small_disk(pid: u32, data_dir: &Path, size: &str) -> bool {
    std::process::Command::new("nsenter")
        .args(["--user", "--mount", "--target", &pid.to_string()])
        .args(["mount", "-o", &format!("remount,size={size}")])
        .arg(data_dir)
        .status()
        .is_ok_and(|s| s.success())
}

/// A workspace binary (`gateway`, `clinic-agent`, `certs`), built next to the running test's
/// `deps/` folder; `cargo test --workspace` builds them, and a lone `cargo test -p tpg-tests`
/// gets them built here.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // Tests run from `target/<profile>/deps/`, binaries such as the benchmark from
    // `target/<profile>/`.
    let here = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if here.ends_with("deps") {
        here.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        here
    };
    let path = dir.join(name);
    if !path.exists() {
        let mut build =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.args(["build", "-p", name, "--bin", name]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let _ = build.status();
    }
    path
}

/// Gives an agent the gateway nodes `nodes` to dial in turn (`[link] gateway` as a list),
/// all under the server name it already has.
pub fn dial_in_turn(config: &mut AgentConfig, nodes: &[SocketAddr]) {
    let name = config.link.server_name.clone();
    config.link.gateways = nodes
        .iter()
        .map(|l| (l.ip().to_string(), l.port(), name.clone()))
        .collect();
}

/// Appends `tables` (TOML tables, e.g. `[[forward]]`) to the configuration file at `config`.
pub fn append_config(config: &Path, tables: &str) -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(config)?;
    text.push('\n');
    text.push_str(tables);
    std::fs::write(config, text)?;
    Ok(())
}

/// A gateway's `[[forward]]` table: the PACS `ae_title` at `addr`, retried at least every
/// second, with `extra` keys (one per line).
pub fn forward_table(name: &str, ae_title: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "[[forward]]\nname = \"{name}\"\nae_title = \"{ae_title}\"\naddress = \"{addr}\"\nretry_max_secs = 1\n{extra}"
    )
}

/// Rewrites `listen = "127.0.0.1:0"` of `[section]` in a config file to `addr`, for daemons
/// run as child processes whose ports the caller must know.
pub fn set_listen(config: &Path, section: &str, addr: SocketAddr) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)?;
    let from = format!("[{section}]\nlisten = \"127.0.0.1:0\"");
    anyhow::ensure!(
        text.contains(&from),
        "no [{section}] listen to set in {}",
        config.display()
    );
    std::fs::write(
        config,
        text.replace(&from, &format!("[{section}]\nlisten = \"{addr}\"")),
    )?;
    Ok(())
}

/// A free TCP port on loopback (racy by nature; fine for tests on one machine).
pub fn free_tcp_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// A free UDP port on loopback.
pub fn free_udp_addr() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
