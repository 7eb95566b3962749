//! A private Garage server (S3-compatible object storage, from its crate: the test script
//! installs `garage` with `cargo install` when it is missing) for one test: a one-node cluster
//! in a temporary folder on free loopback ports, with one bucket and one access key made
//! for it at run time, stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use store::objects::s3::S3Config;

pub struct Garage {
    dir: tempfile::TempDir,
    server: Child,
    pub s3: SocketAddr,
    /// The bucket `tpg` and a key that may read and write it.
    pub config: S3Config,
}

/// The `garage` program: `$TPG_GARAGE`, else on the PATH, else cargo's bin folder.
fn program() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TPG_GARAGE") {
        return Ok(path.into());
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(home.map(|h| h.join("bin")));
    for dir in candidates {
        let path = dir.join("garage");
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!(
        "garage is not installed: ./scripts/test installs it (cargo install garage --version 2.5.0 --locked)"
    )
}

fn hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    getrandom::getrandom(&mut raw).unwrap_or_default();
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

impl Garage {
    pub fn start() -> anyhow::Result<Self> {
        let program = program()?;
        let dir = tempfile::Builder::new().prefix("tpg-garage-").tempdir()?;
        let s3 = crate::free_tcp_addr();
        let rpc = crate::free_tcp_addr();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "{rpc}"
rpc_public_addr = "{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "{s3}"
"#,
                root = dir.path().display(),
                secret = hex(32),
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let server = Command::new(&program)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let (key, secret) = (format!("GK{}", hex(12)), hex(32));
        let mut garage = Self {
            dir,
            server,
            s3,
            config: S3Config {
                bucket: "tpg".into(),
                prefix: String::new(),
                endpoint: Some(format!("http://{s3}")),
                region: "garage".into(),
                access_key_id: key.clone(),
                secret_access_key: secret.clone(),
            },
        };
        let admin = |args: &[&str]| garage.admin(&program, &config, args);
        // The node's id is on disk before its RPC port listens: wait for both.
        let node = retry(|| admin(&["node", "id", "-q"]))?;
        retry(|| admin(&["status"]))?;
        let node = node.split('@').next().unwrap_or_default().trim().to_owned();
        retry(|| admin(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]))?;
        admin(&["layout", "apply", "--version", "1"])?;
        retry(|| admin(&["bucket", "create", "tpg"]))?;
        admin(&["key", "import", "--yes", "-n", "tpg", &key, &secret])?;
        admin(&[
            "bucket", "allow", "--read", "--write", "--owner", "tpg", "--key", &key,
        ])?;
        garage.wait_serving()?;
        Ok(garage)
    }

    fn admin(&self, program: &Path, config: &Path, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(program)
            .arg("-c")
            .arg(config)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?;
        if !out.status.success() {
            bail!(
                "garage {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the S3 API accepts a connection.
    fn wait_serving(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.s3).is_err() {
            if let Some(status) = self.server.try_wait()? {
                bail!("garage stopped ({status}): {}", self.log());
            }
            if Instant::now() > deadline {
                bail!("garage's S3 API did not come up: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The same bucket under a folder of its own, for one test case.
    pub fn folder(&self, prefix: &str) -> S3Config {
        S3Config {
            prefix: prefix.into(),
            ..self.config.clone()
        }
    }
}

/// Retries a first admin call while the server is still starting (about 10 s at most).
fn retry(mut call: impl FnMut() -> anyhow::Result<String>) -> anyhow::Result<String> {
    let mut tries = 0;
    loop {
        match call() {
            Ok(out) => return Ok(out),
            Err(e) if tries >= 100 => return Err(e),
            Err(_) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
