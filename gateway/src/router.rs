//! The router task: assigns delivered consultations with `routing.toml` (`crate::routing`),
//! re-routes declined ones, escalates those not accepted within their SLA, and reloads the
//! roster when its file changes. Every decision is an event with its explanation; every case
//! it cannot place is an alert (log line and `tpg_routing_alerts_total`).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use daemon::replicate::Site;
use proto::consult::{Consultation, EventKind, State};
use proto::ClinicId;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::archive::GatewayArchive;
use crate::metrics::Metrics;
use crate::routing::{Load, Request, Roster, RosterError};

/// What one pass did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub assigned: usize,
    pub escalated: usize,
    pub alerts: usize,
}

pub struct Router {
    site: Site,
    archive: Arc<GatewayArchive>,
    metrics: Arc<Metrics>,
    file: PathBuf,
    roster: Mutex<Option<(Option<SystemTime>, Arc<Roster>)>>,
    /// Cases already alerted about in their current assignment, so an alert is raised once.
    alerted: Mutex<BTreeSet<(String, Option<i64>)>>,
    /// Delivered cases the last pass could give to nobody: they wait in their pool, where any
    /// member may take them.
    unroutable: Mutex<BTreeSet<proto::consult::ConsultationId>>,
    /// Why the roster on disk could not be loaded, while it cannot (the alerts page says so).
    refused: Mutex<Option<String>>,
    /// The roster in force's specialties, for the clinics' links.
    catalog: tokio::sync::watch::Sender<Vec<proto::frame::Specialty>>,
}

impl Router {
    pub fn new(
        site: Site,
        archive: Arc<GatewayArchive>,
        metrics: Arc<Metrics>,
        file: PathBuf,
    ) -> Self {
        Self {
            site,
            archive,
            metrics,
            file,
            roster: Mutex::new(None),
            alerted: Mutex::new(BTreeSet::new()),
            unroutable: Mutex::new(BTreeSet::new()),
            refused: Mutex::new(None),
            catalog: tokio::sync::watch::Sender::new(Vec::new()),
        }
    }

    /// The roster file it watches.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// The specialties of the roster in force, changing with it (empty while there is none).
    pub fn catalog(&self) -> tokio::sync::watch::Receiver<Vec<proto::frame::Specialty>> {
        self.catalog.subscribe()
    }

    /// Why `routing.toml` as it is on disk is not in force, if it is not.
    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads `routing.toml` if it changed since the last load. A bad file keeps the roster in
    /// force (or none, at start) and is reported.
    pub fn reload(&self) -> Result<Arc<Roster>, RosterError> {
        let modified = std::fs::metadata(&self.file)
            .and_then(|m| m.modified())
            .ok();
        let mut current = self.roster.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, roster)) = current.as_ref() {
            if *seen == modified {
                return Ok(roster.clone());
            }
        }
        let loaded = Roster::load(&self.file);
        let refusal = loaded.as_ref().err().map(|e| e.to_string());
        let before = std::mem::replace(
            &mut *self.refused.lock().unwrap_or_else(|p| p.into_inner()),
            refusal.clone(),
        );
        if refusal.is_some() && refusal != before && current.is_none() {
            // Nothing routes until it is fixed: said once per new problem.
            warn!(error = ?refusal, "routing.toml could not be loaded; no consultation is routed until it is fixed");
            self.metrics.routing_alert("roster_invalid");
        }
        match loaded {
            Ok(roster) => {
                let roster = Arc::new(roster);
                info!(
                    file = %self.file.display(),
                    specialists = roster.specialists.len(),
                    rules = roster.rules.len(),
                    "routing roster loaded"
                );
                *current = Some((modified, roster.clone()));
                self.catalog.send_if_modified(|list| {
                    let changed = *list != roster.catalog;
                    if changed {
                        list.clone_from(&roster.catalog);
                    }
                    changed
                });
                Ok(roster)
            }
            Err(e) => match current.as_mut() {
                Some((seen, roster)) => {
                    // Report a bad edit once, and keep routing with the roster in force.
                    if *seen != modified {
                        warn!(error = %e, "routing.toml could not be loaded; keeping the roster in force");
                        self.metrics.routing_alert("roster_invalid");
                        *seen = modified;
                    }
                    Ok(roster.clone())
                }
                None => Err(e),
            },
        }
    }

    /// One pass over every clinic's consultations at `now_ms`: assign the delivered ones,
    /// escalate the overdue ones. Runs on a blocking thread (it reads and writes the index).
    pub fn pass(&self, now_ms: i64) -> Pass {
        let mut pass = Pass::default();
        let roster = match self.reload() {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "no routing roster: consultations wait for an administrator");
                return pass;
            }
        };
        let all = self.site.log.all().unwrap_or_default();
        let mut loads = loads(&all);
        let mut unroutable = BTreeSet::new();
        // After a restore, a clinic's cases wait until its link has given back the gateway's
        // events the backup lacked: asked once a pass for each clinic with a case to act on.
        let mut waiting: HashMap<ClinicId, bool> = HashMap::new();
        // The delivered cases' modalities, read in one go (a burst delivers many at once).
        let delivered: Vec<&Consultation> =
            all.iter().filter(|c| c.state == State::Delivered).collect();
        let asked: Vec<(&ClinicId, &[String])> = delivered
            .iter()
            .map(|c| (&c.clinic, c.studies.as_slice()))
            .collect();
        let mut delivered_modalities: HashMap<&proto::consult::ConsultationId, Vec<String>> =
            delivered
                .iter()
                .map(|c| &c.id)
                .zip(self.archive.modalities_of(&asked))
                .collect();
        for c in &all {
            if !matches!(c.state, State::Delivered | State::Assigned) {
                continue;
            }
            let waits = *waiting
                .entry(c.clinic.clone())
                .or_insert_with(|| self.site.log.awaiting(&c.clinic).map_or(true, |a| a.events));
            if waits {
                continue;
            }
            match c.state {
                State::Delivered => {
                    let modalities = delivered_modalities.remove(&c.id).unwrap_or_default();
                    match roster.route(&request(c, &modalities, &c.declined_by), &loads, now_ms) {
                        Ok(d) => {
                            let kind = EventKind::Assigned {
                                specialist: d.specialist.clone(),
                                rule: d.rule.clone(),
                                reason: d.reason.clone(),
                            };
                            if self.record(c, now_ms, kind) {
                                pass.assigned += 1;
                                loads.entry(d.specialist.clone()).or_default().open_cases += 1;
                                if let Some(alert) = d.alert {
                                    pass.alerts += self.alert(c, "nobody_on_duty", &alert);
                                }
                            }
                        }
                        Err(e) => {
                            unroutable.insert(c.id.clone());
                            let reason = e.to_string();
                            pass.alerts += self.alert(c, "unroutable", &reason);
                            // Once per reason on the case's timeline, where both sites see it.
                            if c.unrouted.as_deref() != Some(reason.as_str()) {
                                self.record(c, now_ms, EventKind::Unrouted { reason });
                            }
                        }
                    }
                }
                State::Assigned => {
                    let (Some(assignee), Some(at)) = (&c.assignee, c.assigned_at_ms) else {
                        continue;
                    };
                    if now_ms < roster.escalation_due_ms(c.urgency, at) {
                        continue;
                    }
                    let mut exclude = c.declined_by.clone();
                    exclude.push(assignee.clone());
                    let modalities = self.modalities(c);
                    match roster.route(&request(c, &modalities, &exclude), &loads, now_ms) {
                        Ok(d) => {
                            let minutes = roster.sla(c.urgency).as_secs() / 60;
                            let kind = EventKind::Escalated {
                                from: assignee.clone(),
                                to: d.specialist.clone(),
                                reason: format!("not accepted within {minutes} min; {}", d.reason),
                            };
                            if self.record(c, now_ms, kind) {
                                pass.escalated += 1;
                                self.metrics.sla_breach(c.urgency.label());
                                pass.alerts += self.alert(
                                    c,
                                    "sla_breach",
                                    &format!(
                                        "{} consultation not accepted by {assignee} within {minutes} min; escalated to {}",
                                        c.urgency.label(),
                                        d.specialist
                                    ),
                                );
                            }
                        }
                        Err(e) => pass.alerts += self.alert(c, "unroutable", &e.to_string()),
                    }
                }
                _ => {}
            }
        }
        *self.unroutable.lock().unwrap_or_else(|p| p.into_inner()) = unroutable;
        pass
    }

    /// Whether the last pass found nobody it may give this delivered case to.
    pub fn is_unroutable(&self, id: &proto::consult::ConsultationId) -> bool {
        self.unroutable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Modalities of the consultation's studies that have arrived.
    /// The pool `c` is routed to by the roster in force (its first matching rule).
    pub fn pool_of(&self, c: &Consultation) -> Option<crate::routing::Pool> {
        let roster = self.reload().ok()?;
        let modalities = self.modalities(c);
        let rule = roster.rule_for(&request(c, &modalities, &[]))?;
        roster.pools.get(&rule.pool).cloned()
    }

    /// The modalities of the case's studies that have arrived (its studies only, not the
    /// clinic's whole archive).
    fn modalities(&self, c: &Consultation) -> Vec<String> {
        self.archive
            .modalities_of(&[(&c.clinic, c.studies.as_slice())])
            .pop()
            .unwrap_or_default()
    }

    fn record(&self, c: &Consultation, now_ms: i64, kind: EventKind) -> bool {
        let name = kind.name();
        match self.site.append(&c.clinic, &c.id, "system", now_ms, kind) {
            Ok(_) => {
                info!(clinic = %c.clinic, consultation = %c.id, event = name, "routing decision recorded");
                true
            }
            Err(e) => {
                warn!(clinic = %c.clinic, consultation = %c.id, event = name, error = %e, "routing decision refused");
                false
            }
        }
    }

    /// Raises an alert once per case and assignment; returns 1 when raised.
    fn alert(&self, c: &Consultation, kind: &str, text: &str) -> usize {
        let key = (format!("{}/{kind}", c.id), c.assigned_at_ms);
        let mut alerted = self.alerted.lock().unwrap_or_else(|p| p.into_inner());
        if !alerted.insert(key) {
            return 0;
        }
        self.metrics.routing_alert(kind);
        warn!(clinic = %c.clinic, consultation = %c.id, alert = kind, "{text}");
        1
    }
}

/// What routing needs to know of a consultation.
fn request<'a>(
    c: &'a Consultation,
    modalities: &'a [String],
    exclude: &'a [String],
) -> Request<'a> {
    Request {
        clinic: c.clinic.as_str(),
        specialty: &c.specialty,
        modalities,
        urgency: c.urgency,
        exclude,
    }
}

/// Open cases per specialist, and since when each idle one has had nothing open.
fn loads(all: &[Consultation]) -> HashMap<String, Load> {
    let mut loads: HashMap<String, Load> = HashMap::new();
    for c in all {
        let Some(who) = &c.assignee else { continue };
        let load = loads.entry(who.clone()).or_default();
        if c.state.is_open() {
            load.open_cases += 1;
        } else if let Some(done) = c.reported_at_ms {
            load.idle_since_ms = Some(load.idle_since_ms.map_or(done, |t| t.max(done)));
        }
    }
    for load in loads.values_mut() {
        if load.open_cases > 0 {
            load.idle_since_ms = None;
        }
    }
    loads
}

/// Runs passes when the gateway appends an event (a delivery, a decline) and every `every`
/// (escalations, roster changes), while this node holds the router's `lease`, until
/// `shutdown`.
pub async fn run(
    router: Arc<Router>,
    every: Duration,
    lease: crate::lease::Lease,
    shutdown: CancellationToken,
) {
    let mut appended = router.site.subscribe();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return lease.release(),
            _ = tick.tick() => {}
            changed = appended.changed() => if changed.is_err() { return },
        }
        if !lease.mine() {
            continue;
        }
        let r = router.clone();
        let pass = tokio::task::spawn_blocking(move || r.pass(crate::consult::now_ms())).await;
        if let Ok(p) = pass {
            if p != Pass::default() {
                info!(
                    assigned = p.assigned,
                    escalated = p.escalated,
                    alerts = p.alerts,
                    "routing pass"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
