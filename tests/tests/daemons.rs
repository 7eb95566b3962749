//! The real `gateway` and `clinic-agent` binaries, started as a user would from configuration
//! files on disk, stopped with SIGTERM.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use harness::{metric, scrape, wait_until, PilotDir, Timings};

fn free_port() -> u16 {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.local_addr().expect("addr").port()
}

fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

async fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_run_from_config_files_and_stop_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw_config = pilot.gateway_config(link).unwrap();
    let gw_metrics = free_tcp();
    let gw_toml = gw_config.file.clone();
    let text = std::fs::read_to_string(&gw_toml).unwrap();
    std::fs::write(
        &gw_toml,
        text.replace(
            "[metrics]\nlisten = \"127.0.0.1:0\"",
            &format!("[metrics]\nlisten = \"{gw_metrics}\""),
        ),
    )
    .unwrap();

    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent_config = pilot.agent_config("jinzhou", &bundle, link).unwrap();
    let agent_metrics = free_tcp();
    let text = std::fs::read_to_string(&agent_config.file).unwrap();
    std::fs::write(
        &agent_config.file,
        text.replace(
            "[metrics]\nlisten = \"127.0.0.1:0\"",
            &format!("[metrics]\nlisten = \"{agent_metrics}\""),
        ),
    )
    .unwrap();

    let mut gateway = Command::new(harness::binary("gateway"))
        .args(["serve", "--config"])
        .arg(&gw_toml)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = Command::new(harness::binary("clinic-agent"))
        .args(["run", "--config"])
        .arg(&agent_config.file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let gw_up = || {
        scrape(gw_metrics)
            .ok()
            .and_then(|m| metric(&m, "tpg_link_up{clinic=\"jinzhou\"}"))
    };
    assert!(
        wait_until(Duration::from_secs(30), || gw_up() == Some(1.0)).await,
        "link came up between the two processes"
    );
    // The agent marks its link up once the gateway's welcome is read, a moment after the
    // gateway counted the connection.
    let agent_up = || {
        scrape(agent_metrics)
            .ok()
            .and_then(|m| metric(&m, "tpg_agent_link_up"))
    };
    assert!(
        wait_until(Duration::from_secs(10), || agent_up() == Some(1.0)).await,
        "the agent reports its link up"
    );

    sigterm(&agent);
    let status = wait_exit(&mut agent, Duration::from_secs(10))
        .await
        .expect("agent exits after SIGTERM");
    assert!(status.success(), "agent exit status {status}");
    assert!(
        wait_until(Duration::from_secs(10), || gw_up() == Some(0.0)).await,
        "gateway saw the agent's goodbye at once, not after an idle timeout"
    );

    sigterm(&gateway);
    let status = wait_exit(&mut gateway, Duration::from_secs(10))
        .await
        .expect("gateway exits after SIGTERM");
    assert!(status.success(), "gateway exit status {status}");
}

/// The Debian packages' systemd units are valid: `systemd-analyze verify` finds nothing to
/// say about them (it only warns, so any output is a failure), with `ExecStart` pointing at
/// the binaries just built.
#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (krate, unit, bin) in [
        ("gateway", "tpg-gateway.service", "gateway"),
        ("clinic-agent", "tpg-clinic-agent.service", "clinic-agent"),
    ] {
        let text = std::fs::read_to_string(root.join(krate).join("debian").join(unit)).unwrap();
        assert!(
            text.contains(&format!("ExecStart=/usr/bin/{bin} ")),
            "{unit}"
        );
        for needed in ["User=", "StateDirectory=", "Restart=always"] {
            assert!(text.contains(needed), "{unit} lacks {needed}");
        }
        let local = text.replace(
            &format!("/usr/bin/{bin}"),
            &harness::binary(bin).display().to_string(),
        );
        let path = dir.path().join(unit);
        std::fs::write(&path, local).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze (Debian's systemd package; scripts/test installs it)");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
    }
}

/// The README's first command: the pilot in a box brings three clinics online, their
/// modalities' studies delivered, and the demo's three consultations on the hospital's pages;
/// Ctrl-C stops it cleanly.
#[test]
fn the_pilot_in_a_box_shows_three_clinics_online_and_cases_on_the_worklist() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let mut pilot = Command::new(env!("CARGO_BIN_EXE_pilot"))
        .arg("--dir")
        .arg(dir.path())
        .args(["--seconds", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(pilot.stdout.take().unwrap()).lines();
    let mut hospital = None;
    let mut said = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if let Some(rest) = line.trim().strip_prefix("hospital   http://") {
            hospital = rest.split('/').next().map(str::to_owned);
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    println!("ready after {:.1} s", started.elapsed().as_secs_f64());
    for clinic in ["jinzhou", "pulandian", "zhuanghe"] {
        assert!(said.contains(&format!("{clinic:<10} link UP")), "{said}");
    }
    let web: SocketAddr = hospital.expect("the hospital's address").parse().unwrap();
    let login = |user: &str| -> String {
        let body = format!(r#"{{"user":"{user}","password":"pilot-demo-2026"}}"#);
        let (status, answer) =
            harness::http(web, "POST", "/api/v1/login", None, Some(&body)).unwrap();
        assert_eq!(status, 200, "{answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        v["token"].as_str().unwrap().to_owned()
    };
    let admin = login("admin");
    let all: serde_json::Value = serde_json::from_str(
        &harness::http_get_as(web, "/api/v1/consultations?scope=all", &admin).unwrap(),
    )
    .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    // The radiologist's worklist holds the emergency, routed to them.
    let li = login("li");
    let mine: serde_json::Value =
        serde_json::from_str(&harness::http_get_as(web, "/api/v1/consultations", &li).unwrap())
            .unwrap();
    assert_eq!(mine[0]["urgency"], "emergency", "{mine}");
    assert_eq!(mine[0]["assignee"], "li");
    let board = harness::http_get_as(web, "/admin/links", &admin).unwrap();
    for clinic in ["jinzhou", "pulandian", "zhuanghe"] {
        let row = board
            .split(&format!("data-clinic=\"{clinic}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("{clinic} on the link board"));
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(row.contains("badge online"), "{clinic}: {row}");
    }
    let status = Command::new("kill")
        .args(["-INT", &pilot.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(pilot.wait().unwrap().success());
    assert!(rest.iter().any(|l| l == "stopped cleanly"), "{rest:?}");
}
