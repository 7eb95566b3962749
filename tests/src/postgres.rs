//! A private PostgreSQL cluster for one test: `initdb` into a temporary folder (from the
//! Debian packages the test script installs; never the system's cluster), started on a free
//! loopback port, stopped when dropped. As root (CI), the server runs as the `postgres`
//! system user, since PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    /// A connection string for the cluster's superuser `tpg`.
    pub url: String,
    pub port: u16,
}

/// The newest installed PostgreSQL's programs.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context(
            "PostgreSQL is not installed: ./scripts/test installs the Debian package postgresql",
        )?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql/*/bin: install the Debian package postgresql")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    /// A cluster for a test: in the temporary folder, without fsync (a test's data need not
    /// survive the machine).
    pub fn start() -> anyhow::Result<Self> {
        Self::launch(tempfile::Builder::new().prefix("tpg-pg-").tempdir()?, false)
    }

    /// A cluster as a hospital would run it, for a benchmark: in a folder under `parent` (on
    /// the disk being measured), with PostgreSQL's default durability (fsync and synchronous
    /// commit on).
    pub fn start_durable_in(parent: &Path) -> anyhow::Result<Self> {
        Self::launch(
            tempfile::Builder::new()
                .prefix("tpg-pg-")
                .tempdir_in(parent)?,
            true,
        )
    }

    fn launch(dir: tempfile::TempDir, durable: bool) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let as_postgres = is_root();
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            let owned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !owned.success() {
                bail!("cannot hand {} to the postgres user", dir.path().display());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = Self {
            url: format!("host=127.0.0.1 port={port} user=tpg dbname=postgres"),
            port,
            dir,
            bin,
            as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "tpg",
                "--auth=trust",
                "-E",
                "UTF8",
                // Whatever locale the machine's environment names (it may not be generated).
                "--no-locale",
                "--no-sync",
            ],
        )?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200{}",
            cluster.dir.path().display(),
            if durable { "" } else { " -c fsync=off" }
        );
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &cluster.dir.path().join("server.log").display().to_string(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )?;
        Ok(cluster)
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        }
        .with_context(|| format!("cannot run {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// CPU seconds the server has used so far: the postmaster with the backends it has reaped
    /// and those still running, from /proc.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = std::fs::read_to_string(self.dir.path().join("data").join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        let Some(postmaster) = pid else {
            return 0.0;
        };
        // utime, stime, cutime, cstime (proc(5), fields 14 to 17) and the parent (field 4).
        let stat = |pid: &str| -> Option<(u32, [f64; 4])> {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = text.rsplit(')').next()?.split_whitespace().collect();
            let tick = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
                    / 100.0
            };
            Some((
                fields.get(1)?.parse().ok()?,
                [tick(11), tick(12), tick(13), tick(14)],
            ))
        };
        let own = stat(&postmaster.to_string()).map_or(0.0, |(_, t)| t.iter().sum());
        let children: f64 = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| stat(&e.file_name().to_string_lossy()))
            .filter(|(parent, _)| *parent == postmaster)
            .map(|(_, t)| t[0] + t[1])
            .sum();
        own + children
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}
