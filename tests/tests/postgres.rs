//! The storage ports' conformance suites on a real PostgreSQL (issue 17), started by the test
//! in a private cluster: each case in a schema of its own; "another handle" is another set of
//! connections, as another gateway node would hold.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use harness::postgres::Cluster;
use store::postgres::accounts::{PgAccounts, PgSessions};
use store::postgres::alerts::PgAlerts;
use store::postgres::archive::PgIndex;
use store::postgres::audit::PgAudit;
use store::postgres::board::PgBoard;
use store::postgres::coordination::{PgLeases, PgNotifier};
use store::postgres::drafts::PgDrafts;
use store::postgres::events::PgEvents;
use store::postgres::Pg;

static SCHEMA: AtomicUsize = AtomicUsize::new(0);

/// A conformance subject: the adapter `make` builds on a fresh schema of its own, and a
/// function building it again on new connections to that schema (another node).
fn subject<T: ?Sized + 'static>(
    cluster: &Cluster,
    make: fn(Pg) -> Box<T>,
) -> (Box<T>, Box<dyn Fn() -> Box<T>>) {
    let schema = format!("case_{}", SCHEMA.fetch_add(1, Ordering::Relaxed));
    let url = cluster.url.clone();
    let pg = Pg::connect(&url, &schema, 2).unwrap();
    (
        make(pg),
        Box::new(move || make(Pg::connect(&url, &schema, 2).unwrap())),
    )
}

/// A gateway node of the pilot listening on `link`, with one radiologist on its roster
/// (read again every 300 ms): on `cluster`'s PostgreSQL when given, else embedded.
fn node(
    pilot: &harness::PilotDir,
    link: std::net::SocketAddr,
    cluster: Option<&Cluster>,
) -> gateway::GatewayConfig {
    let mut config = pilot.gateway_config(link).unwrap();
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let roster = config.data_dir.join("routing.toml");
    std::fs::write(&roster, harness::people::ONE_RADIOLOGIST).unwrap();
    config.routing = Some(gateway::config::RoutingConfig {
        file: roster,
        check: std::time::Duration::from_millis(300),
    });
    if let Some(cluster) = cluster {
        config.storage = gateway::config::StorageConfig {
            index: Some(cluster.url.clone()),
            schema: "tpg".into(),
            connections: 4,
            objects: None,
        };
    }
    config
}

#[test]
fn the_ports_conform_on_postgresql() {
    use store::accounts::{AccountStore, SessionStore};
    use store::alerts::AlertStore;
    use store::archive::forwarding::conformance::Indexed;
    use store::archive::ArchiveIndex;
    use store::audit::AuditLog;
    use store::board::BoardStore;
    use store::coordination::{Leases, Notifier};
    use store::drafts::DraftStore;
    use store::events::EventStore;

    let c = Cluster::start().unwrap();
    store::drafts::conformance::run(|| {
        subject(&c, |pg| Box::new(PgDrafts::new(pg)) as Box<dyn DraftStore>)
    });
    store::board::conformance::run(|| {
        subject(&c, |pg| Box::new(PgBoard::new(pg)) as Box<dyn BoardStore>)
    });
    store::alerts::conformance::run(|| {
        subject(&c, |pg| Box::new(PgAlerts::new(pg)) as Box<dyn AlertStore>)
    });
    store::accounts::conformance::run(|| {
        subject(&c, |pg| {
            Box::new(PgAccounts::new(pg)) as Box<dyn AccountStore>
        })
    });
    store::accounts::conformance::run_sessions(|| {
        subject(&c, |pg| {
            Box::new(PgSessions::new(pg)) as Box<dyn SessionStore>
        })
    });
    store::archive::conformance::run(|| {
        subject(&c, |pg| Box::new(PgIndex::new(pg)) as Box<dyn ArchiveIndex>)
    });
    store::archive::forwarding::conformance::run(|| {
        subject(&c, |pg| Box::new(PgIndex::new(pg)) as Box<dyn Indexed>)
    });
    store::events::conformance::run(|| {
        subject(&c, |pg| Box::new(PgEvents::new(pg)) as Box<dyn EventStore>)
    });
    store::audit::conformance::run(|| {
        subject(&c, |pg| Box::new(PgAudit::new(pg)) as Box<dyn AuditLog>)
    });
    store::coordination::conformance::run_leases(|| {
        subject(&c, |pg| Box::new(PgLeases::new(pg)) as Box<dyn Leases>)
    });
    store::coordination::conformance::run_notifications(|| {
        subject(&c, |pg| {
            Box::new(PgNotifier::new(pg).unwrap()) as Box<dyn Notifier>
        })
    });
}

/// Two nodes start at once on an empty database: the migrations run once, and both use them.
#[test]
fn migrations_apply_once_however_many_nodes_start_together() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.url.clone();
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Pg::connect(&url, "tpg", 1).unwrap())
        })
        .collect();
    let pgs: Vec<Pg> = nodes.into_iter().map(|n| n.join().unwrap()).collect();
    let applied = pgs[0]
        .run(|c| {
            let row = c.query_one(
                "SELECT count(*), count(DISTINCT version), max(version) FROM schema_migrations",
                &[],
            )?;
            Ok((
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, i32>(2),
            ))
        })
        .unwrap();
    assert_eq!(applied, (3, 3, 3), "each migration once");
    // Every node reads the same setting, whoever made it first.
    let made: Vec<Vec<u8>> = pgs
        .iter()
        .enumerate()
        .map(|(n, pg)| pg.setting("test-key", vec![n as u8]).unwrap())
        .collect();
    assert!(made.iter().all(|k| *k == made[0]), "{made:?}");
    // A bad address names itself and the fix, without a password.
    let refused = Pg::connect("postgres://tpg:secret@127.0.0.1:1/postgres", "tpg", 1)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("[storage] index") && !refused.contains("secret"),
        "{refused}"
    );
}

/// Two gateway nodes on one PostgreSQL (and one objects folder): a clinic linked to node A
/// sends a consultation; it is routed once, whichever node holds the router's lease; a
/// specialist works it on node B, whose accounts and sessions are the same database's; the
/// report B signs reaches the clinic through A's link, woken by the database's notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_nodes_share_one_database_and_a_report_signed_on_one_reaches_the_clinic_of_the_other(
) {
    use std::time::Duration;

    use harness::people::sign_up;
    use harness::{free_udp_addr, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};
    use proto::consult::{ConsultationId, EventKind, State, Urgency};

    let cluster = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let (link_a, link_b) = (free_udp_addr(), free_udp_addr());
    let node = |link| node(&pilot, link, Some(&cluster));
    let a = RunningGateway::start(node(link_a)).unwrap();
    let b = RunningGateway::start(node(link_b)).unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot.agent_config("jinzhou", &bundle, link_a).unwrap(),
        Default::default(),
    )
    .unwrap();
    // Signed up through node A; the account is the database's, so B knows it too.
    sign_up(&a.handle.accounts, harness::people::radiologist());
    let li = b.handle.accounts.script_token("li").unwrap();

    let id = ConsultationId::new(daemon::now_ms() as u64, [9; 10]);
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    harness::people::send_request(
        &agent.handle.consult,
        &jinzhou,
        &id,
        "P-1",
        "radiology",
        Urgency::Urgent,
    );
    let on_b = b.handle.consult.clone();
    let watched = id.clone();
    let state = move |site: &daemon::replicate::Site| {
        site.log
            .get(&watched)
            .unwrap()
            .map(|f| f.consultation.state)
    };
    let s = state.clone();
    assert!(
        wait_until(Duration::from_secs(60), move || s(&on_b)
            == Some(State::Assigned))
        .await,
        "node B sees the case node A received, assigned"
    );
    // B's link board shows the clinic online, as A keeps it.
    let shown = b.handle.board.snapshot();
    let row = shown
        .get(&jinzhou)
        .expect("B's board lists the clinic linked to A");
    assert!(row.online, "online on B's board: {row:?}");
    assert!(!a.handle.board.snapshot().is_empty() && !row.agent_version.is_empty());
    let web = b.web_addr;
    let (status, body) =
        harness::http(web, "GET", "/api/v1/consultations", Some(&li), None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(id.as_str()), "li's worklist on B: {body}");
    harness::people::accept_and_report(web, &li, id.as_str());
    let clinic = agent.handle.consult.clone();
    let s = state.clone();
    assert!(
        wait_until(Duration::from_secs(30), move || s(&clinic)
            == Some(State::Reported))
        .await,
        "the report signed on B reaches the clinic linked to A"
    );
    // Routed once, though both nodes run a router.
    let timeline = a.handle.consult.log.timeline(&id).unwrap();
    let assigned = timeline
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Assigned { .. }))
        .count();
    assert_eq!(assigned, 1, "{timeline:?}");
    // While node A serves the clinic's link, node B does not take a second one: the same
    // clinic dialling B is sent on.
    let mut twin = pilot.agent_config("jinzhou", &bundle, link_b).unwrap();
    twin.data_dir = dir.path().join("twin");
    let twin = RunningAgent::start(twin, Default::default()).unwrap();
    let refused = wait_until(Duration::from_secs(20), || {
        twin.handle
            .link_status()
            .last_error
            .is_some_and(|e| e.contains("another gateway node"))
    })
    .await;
    assert!(refused, "{:?}", twin.handle.link_status().last_error);
    assert!(!twin.handle.link_status().up);
    twin.stop().await.unwrap();

    // An alert acknowledged through node A shows acknowledged on node B's page: a case of a
    // specialty no rule takes waits unrouted, and alerts.
    let lost = ConsultationId::new(daemon::now_ms() as u64, [8; 10]);
    harness::people::send_request(
        &agent.handle.consult,
        &jinzhou,
        &lost,
        "P-2",
        "neurosurgery",
        Urgency::Routine,
    );
    let admin = a.admin_token().unwrap();
    let row_of = |page: &str| {
        page.split("<tr")
            .find(|r| r.contains(&format!("data-about=\"{lost}\"")))
            .map(str::to_owned)
    };
    let (web_a, web_b) = (a.web_addr, b.web_addr);
    let listed = |web| {
        harness::http_get_as(web, "/admin/alerts", &admin)
            .ok()
            .and_then(|p| row_of(&p))
    };
    assert!(
        wait_until(Duration::from_secs(30), || listed(web_a).is_some()).await,
        "node A lists the unrouted case's alert"
    );
    let ledger = a.handle.alerts.clone();
    let key = ("alerts.unrouted".to_owned(), lost.to_string());
    tokio::task::spawn_blocking(move || {
        let raised = ledger.raised_since(&key).unwrap().expect("raised");
        ledger.acknowledge(&key, raised, "admin", daemon::now_ms())
    })
    .await
    .unwrap()
    .unwrap();
    let on_b = listed(web_b).expect("node B lists it too");
    assert!(
        on_b.contains("class=\"acknowledged\""),
        "acknowledged on B as on A: {on_b}"
    );
    agent.stop().await.unwrap();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// A clinic configured with two gateway nodes: when the node it is linked to stops, it links
/// to the other by itself, and its cases go on — a new one is routed there, and a report
/// signed there reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_fails_over_to_the_other_gateway_node_and_its_cases_go_on() {
    use std::time::Duration;

    use harness::people::sign_up;
    use harness::{free_udp_addr, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};
    use proto::consult::{ConsultationId, State, Urgency};

    let cluster = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let (link_a, link_b) = (free_udp_addr(), free_udp_addr());
    let node = |link| node(&pilot, link, Some(&cluster));
    let a = RunningGateway::start(node(link_a)).unwrap();
    let b = RunningGateway::start(node(link_b)).unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let mut agent_config = pilot.agent_config("jinzhou", &bundle, link_a).unwrap();
    harness::dial_in_turn(&mut agent_config, &[link_a, link_b]);
    let agent = RunningAgent::start(agent_config, Default::default()).unwrap();
    sign_up(&b.handle.accounts, harness::people::radiologist());
    let li = b.handle.accounts.script_token("li").unwrap();
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    let send = |id: &ConsultationId| {
        harness::people::send_request(
            &agent.handle.consult,
            &jinzhou,
            id,
            "P-1",
            "radiology",
            Urgency::Urgent,
        );
    };
    let state = |site: &daemon::replicate::Site, id: &ConsultationId| {
        site.log.get(id).unwrap().map(|f| f.consultation.state)
    };
    let first = ConsultationId::new(daemon::now_ms() as u64, [1; 10]);
    send(&first);
    assert!(
        wait_until(Duration::from_secs(60), || state(&b.handle.consult, &first)
            == Some(State::Assigned))
        .await,
        "the first case arrives through node A"
    );

    // Node A stops; the agent links to B by itself.
    a.stop().await.unwrap();
    let second = ConsultationId::new(daemon::now_ms() as u64, [2; 10]);
    send(&second);
    assert!(
        wait_until(Duration::from_secs(60), || state(
            &b.handle.consult,
            &second
        ) == Some(State::Assigned))
        .await,
        "a case sent after A stopped arrives through B and is routed there"
    );
    harness::people::accept_and_report(b.web_addr, &li, first.as_str());
    assert!(
        wait_until(Duration::from_secs(30), || state(
            &agent.handle.consult,
            &first
        ) == Some(State::Reported))
        .await,
        "the report reaches the clinic through B"
    );
    agent.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// `gateway migrate`: a pilot's embedded folder, with a study, a consultation, an account and
/// audit records, copied into PostgreSQL and its objects into a bucket (Garage); the gateway
/// started on them, with the pilot's objects folder put away, has everything, the audit chain
/// verifies, the clinic reconnects without sending its study again, and a second run changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_pilot_migrates_into_postgresql_and_a_bucket_and_its_clinic_sends_nothing_again(
) {
    use std::time::Duration;

    use harness::people::{sign_up, PASSWORD};
    use harness::{free_udp_addr, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};
    use proto::consult::{ConsultationId, State, Urgency};
    use sha2::Digest;

    let cluster = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let embedded = node(&pilot, link, None);
    let gw = RunningGateway::start(embedded.clone()).unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot.agent_config("jinzhou", &bundle, link).unwrap(),
        Default::default(),
    )
    .unwrap();
    sign_up(&gw.handle.accounts, harness::people::radiologist());
    let study = harness::samples::write_ct_series(&dir.path().join("cd"), "P-1", 3, 64 * 64 * 2, 7)
        .unwrap();
    for f in &study.files {
        agent.handle.ingest_file(f).unwrap();
    }
    let id = ConsultationId::new(daemon::now_ms() as u64, [3; 10]);
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    harness::people::send_request(
        &agent.handle.consult,
        &jinzhou,
        &id,
        "P-1",
        "radiology",
        Urgency::Urgent,
    );
    let (site, archive) = (gw.handle.consult.clone(), gw.handle.archive.clone());
    let uid = study.study_uid.clone();
    let (j, i) = (jinzhou.clone(), id.clone());
    assert!(
        wait_until(Duration::from_secs(60), move || {
            site.log
                .get(&i)
                .unwrap()
                .is_some_and(|f| f.consultation.state == State::Assigned)
                && archive
                    .study_instances(&j, std::slice::from_ref(&uid))
                    .is_ok_and(|s| s.len() == 3)
        })
        .await,
        "the study and the case reach the pilot's gateway"
    );
    // Something in the audit log: li reads the worklist.
    let li = gw.handle.accounts.script_token("li").unwrap();
    harness::http(gw.web_addr, "GET", "/api/v1/consultations", Some(&li), None).unwrap();
    gw.stop().await.unwrap();

    // Into PostgreSQL and a bucket, twice: the second run finds everything there.
    let garage = harness::garage::Garage::start().unwrap();
    let mut target = node(&pilot, link, Some(&cluster));
    target.storage.objects = Some(garage.config.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        match gateway::migrate::migrate(&embedded, &target) {
            Ok(m) => break m,
            // The stopped gateway's last tasks let go of its folder a moment later.
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e:#}"),
        }
    };
    assert_eq!(
        (first.clinics, first.instances, first.consultations),
        (1, 3, 1)
    );
    assert!(first.accounts >= 1 && first.audit_records >= 1, "{first:?}");
    assert!(first.objects >= 3, "{first:?}");
    let again = gateway::migrate::migrate(&embedded, &target).unwrap();
    assert_eq!(again, first, "a second run changes nothing");
    // The pilot's objects folder is put away: the city deployment reads the bucket.
    let folder = embedded.data_dir.join("objects");
    std::fs::rename(&folder, folder.with_file_name("objects-of-the-pilot")).unwrap();

    // The city deployment starts on it; the clinic reconnects and sends nothing again.
    let gw = RunningGateway::start(target).unwrap();
    let c = gw
        .handle
        .consult
        .log
        .get(&id)
        .unwrap()
        .unwrap()
        .consultation;
    assert_eq!(c.state, State::Assigned);
    let instances = gw
        .handle
        .archive
        .study_instances(&jinzhou, std::slice::from_ref(&study.study_uid))
        .unwrap();
    assert_eq!(instances.len(), 3);
    for (_, record) in &instances {
        let bytes = store::objects::read_all(gw.handle.archive.objects(), &record.object).unwrap();
        assert_eq!(
            proto::sync::ObjectId::from_digest(&sha2::Sha256::digest(&bytes).into()),
            record.object,
            "each instance is in the bucket, whole"
        );
    }
    assert_eq!(
        gw.handle.accounts.verify("li", PASSWORD).unwrap().name,
        "li"
    );
    let li = gw.handle.accounts.script_token("li").unwrap();
    let (status, body) =
        harness::http(gw.web_addr, "GET", "/api/v1/consultations", Some(&li), None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(id.as_str()), "{body}");
    let up = wait_until(Duration::from_secs(30), || {
        gw.handle
            .live
            .clinics()
            .iter()
            .any(|c| c.as_str() == "jinzhou")
    })
    .await;
    assert!(up, "the clinic links to the new deployment");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = gw.metrics();
    let resent = metrics
        .lines()
        .filter(|l| l.starts_with("tpg_gateway_bytes_received"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert_eq!(resent, 0.0, "the clinic sends no object again: {metrics}");
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}
