//! The storage ports' conformance suites on a real PostgreSQL (issue 17), started by the test
//! in a private cluster: each case in a schema of its own; "another handle" is another set of
//! connections, as another gateway node would hold.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use harness::postgres::Cluster;
use store::postgres::accounts::{PgAccounts, PgSessions};
use store::postgres::archive::PgIndex;
use store::postgres::audit::PgAudit;
use store::postgres::board::PgBoard;
use store::postgres::coordination::{PgLeases, PgNotifier};
use store::postgres::drafts::PgDrafts;
use store::postgres::events::PgEvents;
use store::postgres::Pg;

static SCHEMA: AtomicUsize = AtomicUsize::new(0);

fn fresh(cluster: &Cluster) -> (Pg, impl Fn() -> Pg + 'static) {
    let schema = format!("case_{}", SCHEMA.fetch_add(1, Ordering::Relaxed));
    let url = cluster.url.clone();
    let pg = Pg::connect(&url, &schema, 2).unwrap();
    (pg, move || Pg::connect(&url, &schema, 2).unwrap())
}

#[test]
fn the_ports_conform_on_postgresql() {
    let cluster = Cluster::start().unwrap();
    store::drafts::conformance::run(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgDrafts::new(pg)) as Box<dyn store::drafts::DraftStore>,
            Box::new(move || Box::new(PgDrafts::new(again())) as Box<dyn store::drafts::DraftStore>)
                as _,
        )
    });
    store::board::conformance::run(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgBoard::new(pg)) as Box<dyn store::board::BoardStore>,
            Box::new(move || Box::new(PgBoard::new(again())) as Box<dyn store::board::BoardStore>)
                as _,
        )
    });
    store::accounts::conformance::run(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgAccounts::new(pg)) as Box<dyn store::accounts::AccountStore>,
            Box::new(move || {
                Box::new(PgAccounts::new(again())) as Box<dyn store::accounts::AccountStore>
            }) as _,
        )
    });
    store::accounts::conformance::run_sessions(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgSessions::new(pg)) as Box<dyn store::accounts::SessionStore>,
            Box::new(move || {
                Box::new(PgSessions::new(again())) as Box<dyn store::accounts::SessionStore>
            }) as _,
        )
    });
    store::archive::conformance::run(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgIndex::new(pg)) as Box<dyn store::archive::ArchiveIndex>,
            Box::new(move || {
                Box::new(PgIndex::new(again())) as Box<dyn store::archive::ArchiveIndex>
            }) as _,
        )
    });
    store::archive::forwarding::conformance::run(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgIndex::new(pg)) as Box<dyn store::archive::forwarding::conformance::Indexed>,
            Box::new(move || {
                Box::new(PgIndex::new(again()))
                    as Box<dyn store::archive::forwarding::conformance::Indexed>
            }) as _,
        )
    });
    store::events::conformance::run(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgEvents::new(pg)) as Box<dyn store::events::EventStore>,
            Box::new(move || Box::new(PgEvents::new(again())) as Box<dyn store::events::EventStore>)
                as _,
        )
    });
    store::audit::conformance::run(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgAudit::new(pg)) as Box<dyn store::audit::AuditLog>,
            Box::new(move || Box::new(PgAudit::new(again())) as Box<dyn store::audit::AuditLog>)
                as _,
        )
    });
    store::coordination::conformance::run_leases(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgLeases::new(pg)) as Box<dyn store::coordination::Leases>,
            Box::new(move || {
                Box::new(PgLeases::new(again())) as Box<dyn store::coordination::Leases>
            }) as _,
        )
    });
    store::coordination::conformance::run_notifications(|| {
        let (pg, again) = fresh(&cluster);
        (
            Box::new(PgNotifier::new(pg).unwrap()) as Box<dyn store::coordination::Notifier>,
            Box::new(move || {
                Box::new(PgNotifier::new(again()).unwrap())
                    as Box<dyn store::coordination::Notifier>
            }) as _,
        )
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
            Ok(c.query_one("SELECT count(*) FROM schema_migrations", &[])?
                .get::<_, i64>(0))
        })
        .unwrap();
    assert_eq!(applied, 1);
    // A bad address names itself and the fix, without a password.
    let refused = Pg::connect("postgres://tpg:secret@127.0.0.1:1/postgres", "tpg", 1)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("[storage] index") && !refused.contains("secret"),
        "{refused}"
    );
}
