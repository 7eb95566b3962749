//! The web pages in a real headless Chromium: a township doctor logs in, imports a study from
//! the browser and sends an emergency consultation; the specialist finds it at the top of the
//! worklist, opens the viewer (the image has real, non-blank pixels), signs a report; the
//! doctor sees the report; an administrator looks at the link board, alerts, users and audit
//! log. Screenshots of every page, at 1366×768 and on an upright tablet, go to
//! `target/screenshots/`. Another session scrolls a 24-slice head CT and an ultrasound cine
//! loop in the viewer and reads a 12-lead ECG, without the page loading again.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use daemon::accounts::Role;
use harness::people::{person, request, sign_up, with_routing, ONE_RADIOLOGIST, PASSWORD};
use harness::webdriver::{keys, Browser};
use harness::{free_udp_addr, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};
use proto::consult::{ConsultationId, EventKind, State, Urgency};
use serde_json::{json, Value};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

/// One browser session at a time: two Chromiums and their daemons on a small machine make the
/// waits of either test flaky.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Saves the page at 1366×768 and on a tablet held upright, where nothing may need sideways
/// scrolling but what scrolls on its own (a wide table in its box).
fn shot(b: &Browser, name: &str) {
    b.screenshot(&shots().join(format!("{name}.png"))).unwrap();
    b.resize(768, 1024).unwrap();
    b.screenshot(&shots().join(format!("{name}-tablet.png")))
        .unwrap();
    let overflow = b.overflow_x().unwrap();
    b.resize(1366, 768).unwrap();
    assert!(
        overflow <= 0,
        "{name} is {overflow} px too wide for a tablet"
    );
}

fn log_in(b: &Browser, base: &str, name: &str) {
    harness::webdriver::log_in(b, base, name).unwrap();
}

/// A pilot on this machine for one test: its folder, a gateway with `roster` as its
/// `routing.toml` (read again twice a second), and, with `clinic`, the Jinzhou clinic's agent
/// linked to it with the doctor "wang" signed up.
struct Pilot {
    dir: tempfile::TempDir,
    gw_config: gateway::GatewayConfig,
    gw: RunningGateway,
    agent: Option<RunningAgent>,
}

fn pilot(roster: Option<&str>, clinic: bool) -> Pilot {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let mut gw_config = pilot.gateway_config(link).unwrap();
    if let Some(text) = roster {
        let file = gw_config.data_dir.join("routing.toml");
        std::fs::create_dir_all(&gw_config.data_dir).unwrap();
        std::fs::write(&file, text).unwrap();
        gw_config.routing = Some(gateway::config::RoutingConfig {
            file,
            check: Duration::from_millis(500),
        });
    }
    let gw = RunningGateway::start(gw_config.clone()).unwrap();
    let agent = clinic.then(|| {
        let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
        let agent = RunningAgent::start(
            pilot.agent_config("jinzhou", &bundle, link).unwrap(),
            Default::default(),
        )
        .unwrap();
        sign_up(
            &agent.handle.accounts,
            person("wang", Role::Doctor, "Dr Wang", None, None),
        );
        agent
    });
    Pilot {
        dir,
        gw_config,
        gw,
        agent,
    }
}

/// Chooses the specialty whose option reads `shown` (its name in the page's language, or its
/// id) on the new-consultation form, and returns the id the form sends.
fn choose_specialty(b: &Browser, shown: &str) -> String {
    let script = format!(
        "const s = document.querySelector('select[name=specialty]');
         const o = [...s.options].find(o => o.text === '{shown}' || o.value === '{shown}');
         if (!o) return 'no option ' + [...s.options].map(o => o.text).join('|');
         s.value = o.value; return o.value;"
    );
    let chosen = b.script(&script).unwrap();
    chosen.as_str().unwrap_or_default().to_owned()
}

/// The hospital's specialties have reached the clinic: its form offers them.
async fn wait_for_specialties(agent: &RunningAgent) {
    let kept = agent.handle.specialties.clone();
    assert!(
        wait_until(Duration::from_secs(30), || kept.list().is_some()).await,
        "the gateway sends its specialties when the link comes up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doctor_and_a_specialist_take_an_emergency_case_to_a_report_in_the_browser() {
    let Pilot { dir, gw, agent, .. } = pilot(Some(ONE_RADIOLOGIST), true);
    let agent = agent.unwrap();
    // Not the roster's "Li Wei": the report must carry the account's name.
    sign_up(&gw.handle.accounts, harness::people::radiologist());
    sign_up(
        &gw.handle.accounts,
        person("chen", Role::Admin, "Chen (IT)", None, None),
    );
    let study =
        harness::samples::write_ct_series(&dir.path().join("cd"), "P-7", 3, 128 * 128 * 2, 42)
            .unwrap();
    // An older routine case for the same specialist: the emergency must still come first.
    let routine = ConsultationId::new(daemon::now_ms() as u64, [3; 10]);
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    harness::people::send_request(
        &agent.handle.consult,
        &jinzhou,
        &routine,
        "P-1",
        "radiology",
        Urgency::Routine,
    );
    let clinic = format!("http://{}", daemon::client::local(agent.web_addr));
    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    wait_for_specialties(&agent).await;

    let _one = ONE_BROWSER.lock().await;
    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    // The doctor logs in and imports the study from the "CD".
    let b = tokio::task::spawn_blocking(move || {
        log_in(&b, &clinic, "wang");
        shot(&b, "clinic-1-cases");
        b.goto(&format!("{clinic}/import")).unwrap();
        let files: Vec<_> = study.files.iter().map(|p| p.display().to_string()).collect();
        b.type_into("#files", &files.join("\n")).unwrap();
        b.click("#import").unwrap();
        let rows = b.find("#import-results").and_then(|_| {
            b.script("return document.querySelectorAll('#import-results tr[data-outcome=stored]').length")
        });
        assert_eq!(rows.unwrap(), 3, "every file of the study is imported");
        shot(&b, "clinic-2-import");
        // A new emergency consultation with that study; consent recorded.
        b.goto(&format!("{clinic}/cases/new")).unwrap();
        b.click(&format!("input[value='{}']", study.study_uid)).unwrap();
        b.type_into("textarea[name=question]", "intracranial bleed?").unwrap();
        choose_specialty(&b, "radiology");
        b.script("document.querySelector('select[name=urgency]').value = 'emergency'")
            .unwrap();
        b.type_into("input[name=consent_given_by]", "patient").unwrap();
        shot(&b, "clinic-3-new-case");
        b.click("#send").unwrap();
        b.find("ol.timeline").unwrap();
        shot(&b, "clinic-4-case-sent");
        (b, clinic)
    })
    .await
    .unwrap();
    let (b, clinic) = b;
    let url = b.url().unwrap();
    let id = ConsultationId::parse(url.rsplit('/').next().unwrap())
        .unwrap_or_else(|| panic!("the form leads to the new case's page, not {url}"));
    let site = gw.handle.consult.clone();
    let case = id.clone();
    let assigned = |id: &ConsultationId| {
        site.log
            .get(id)
            .unwrap()
            .is_some_and(|f| f.consultation.state == State::Assigned)
    };
    assert!(
        wait_until(Duration::from_secs(60), || assigned(&case)
            && assigned(&routine))
        .await,
        "both cases reach the hospital and are routed to li"
    );
    let sent = site.log.get(&case).unwrap().unwrap().consultation;
    assert_eq!(
        sent.urgency,
        Urgency::Emergency,
        "the form's urgency is kept"
    );

    // The specialist: the case is at the top of the worklist; viewer; report.
    let impression = "No intracranial haemorrhage.";
    let case = id.clone();
    let gateway_url = hospital.clone();
    let b = tokio::task::spawn_blocking(move || {
        log_in(&b, &hospital, "li");
        b.find("#worklist").unwrap();
        let top = b
            .script("return document.querySelector('#worklist tbody tr').getAttribute('data-case')")
            .unwrap();
        assert_eq!(top, case.as_str(), "the emergency is first on the worklist");
        shot(&b, "gateway-1-worklist");
        b.click(&format!("tr[data-case='{case}'] a")).unwrap();
        b.click("#accept").unwrap();
        b.find("#report-form").unwrap();
        shot(&b, "gateway-2-case");
        // The images arrive (the clinic sends them at the case's urgency).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            b.click("#open-viewer").unwrap();
            if b.exists("#image") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the images never arrived");
            std::thread::sleep(Duration::from_millis(500));
            b.goto(&format!("{hospital}/cases/{case}")).unwrap();
        }
        // The frame is decoded and drawn: its pixels are not all the same.
        let measure = || {
            b.script(
                "const img = document.querySelector('#image');
                 if (!img.complete || img.naturalWidth === 0) return -1;
                 const c = document.createElement('canvas');
                 c.width = img.naturalWidth; c.height = img.naturalHeight;
                 const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                 const d = g.getImageData(0, 0, c.width, c.height).data;
                 let lo = 255, hi = 0;
                 for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
                 return hi - lo;",
            )
            .unwrap()
            .as_i64()
            .unwrap_or(-1)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut spread = measure();
        while spread < 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            spread = measure();
        }
        assert!(spread > 50, "the rendered frame is not blank (spread {spread})");
        shot(&b, "gateway-3-viewer");
        b.goto(&format!("{hospital}/cases/{case}")).unwrap();
        b.type_into("textarea[name=findings]", "Normal grey-white differentiation.").unwrap();
        b.type_into("textarea[name=impression]", impression).unwrap();
        b.click_to_next_page("#preview").unwrap();
        b.type_into("#password", PASSWORD).unwrap();
        b.click_to_next_page("#sign").unwrap();
        let report = b.text("#report").unwrap();
        assert!(report.contains(impression), "{report}");
        assert!(report.contains("Dr Li"), "the report is signed by the logged-in specialist");
        shot(&b, "gateway-4-report");
        b
    })
    .await
    .unwrap();

    // The doctor sees the report.
    let clinic_site = agent.handle.consult.clone();
    let case = id.clone();
    assert!(
        wait_until(Duration::from_secs(30), || {
            clinic_site
                .log
                .get(&case)
                .unwrap()
                .is_some_and(|f| f.consultation.state == State::Reported)
        })
        .await,
        "the report reaches the clinic"
    );
    let b = tokio::task::spawn_blocking(move || {
        b.goto(&format!("{clinic}/cases/{id}")).unwrap();
        let report = b.text("#report").unwrap();
        assert!(report.contains(impression), "{report}");
        shot(&b, "clinic-5-report");
        b.click("#acknowledge").unwrap();
        b.find("span[data-state=acknowledged]").unwrap();
        b.goto(&format!("{clinic}/cases/{id}/print")).unwrap();
        let printed = b.text("#report").unwrap();
        assert!(printed.contains(impression), "{printed}");
        shot(&b, "clinic-6-print");
        b
    })
    .await
    .unwrap();

    // The administrator's pages, after the specialist has logged out.
    let hospital = gateway_url;
    let gw_accounts = gw.handle.accounts.clone();
    tokio::task::spawn_blocking(move || {
        b.goto(&format!("{hospital}/worklist")).unwrap();
        b.click_to_next_page("form[action='/logout'] button")
            .unwrap();
        log_in(&b, &hospital, "chen");
        b.goto(&format!("{hospital}/admin/links")).unwrap();
        if let Err(e) = b.find("#links tr[data-clinic=jinzhou]") {
            panic!(
                "{e:#}\nat {}:\n{}",
                b.url().unwrap_or_default(),
                b.text("body").unwrap_or_default()
            );
        }
        shot(&b, "gateway-5-links");
        b.goto(&format!("{hospital}/admin/alerts")).unwrap();
        shot(&b, "gateway-6-alerts");
        b.goto(&format!("{hospital}/admin/users")).unwrap();
        assert!(b.text("#users").unwrap().contains("Dr Li"));
        shot(&b, "gateway-7-users");
        // Deactivating asks first: "no" changes nothing, "yes" deactivates.
        let deactivate = "form[action='/admin/users/li/deactivate'] button";
        b.script("window.confirm = function () { return false; }")
            .unwrap();
        b.click(deactivate).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(b.exists(deactivate), "a refused confirmation sends nothing");
        b.script("window.confirm = function () { return true; }")
            .unwrap();
        b.click(deactivate).unwrap();
        b.find("form[action='/admin/users/li/reactivate']").unwrap();
        // The administrator gives li another role and a qualification; the role change is in
        // the audit log, in words, with the roles before and after.
        let details = "form[action='/admin/users/li/details']";
        b.script(&format!(
            "const f = document.querySelector(\"{details}\"); f.closest('details').open = true;
             f.querySelector('[name=role]').value = 'admin';
             f.querySelector('[name=qualification]').value = 'chief radiologist';"
        ))
        .unwrap();
        b.click_to_next_page(&format!("{details} button")).unwrap();
        assert_eq!(
            gw_accounts.get("li").unwrap().unwrap().role,
            Role::Admin,
            "the role is changed"
        );
        b.goto(&format!("{hospital}/admin/audit")).unwrap();
        let changed = b
            .text("#audit td[data-action=role_change]")
            .unwrap_or_default();
        assert!(changed.contains("Changed a role"), "{changed}");
        b.goto(&format!("{hospital}/admin/users")).unwrap();
        b.goto(&format!("{hospital}/admin/audit")).unwrap();
        assert!(b.text("#audit").unwrap().contains("report"));
        shot(&b, "gateway-8-audit");
    })
    .await
    .unwrap();
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// A radiologist and a cardiologist on duty; the roster knows each specialty by its Chinese and
/// English names, and a catch-all sends whatever radiology reads to radiology.
const TWO_SPECIALTIES: &str = r#"
[[specialist]]
id = "li"
name = "李伟"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 12
utc_offset = "+08:00"
duty = ["daily 00:00-24:00"]

[[specialist]]
id = "zhang"
name = "张敏"
specialties = ["cardiology"]
qualification = "attending cardiologist"
years_independent = 9
utc_offset = "+08:00"
duty = ["daily 00:00-24:00"]

[[specialty]]
id = "radiology"
names = ["放射科", "影像科", "Radiology"]

[[specialty]]
id = "cardiology"
names = ["心内科", "心血管内科", "Cardiology"]

[[pool]]
id = "radiology"
members = ["li"]
lead = "li"

[[pool]]
id = "cardiology"
members = ["zhang"]
lead = "zhang"

[[rule]]
id = "cardiology"
pool = "cardiology"
specialty = ["cardiology"]

[[rule]]
id = "other"
pool = "radiology"
"#;

/// Issue 16, item 1: the doctor chooses "心内科" from the hospital's own list for an emergency
/// ECG, and the on-duty cardiologist gets it; a specialty the roster does not know (typed
/// before the clinic had the list) is given to nobody and raises an alert the administrator
/// sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cardiology_emergency_chosen_in_chinese_reaches_the_cardiologist_and_an_unknown_specialty_waits(
) {
    let Pilot { dir, gw, agent, .. } = pilot(Some(TWO_SPECIALTIES), true);
    let agent = agent.unwrap();
    sign_up(
        &gw.handle.accounts,
        person("chen", Role::Admin, "Chen (IT)", None, None),
    );
    let patient = harness::samples::DemoPatient {
        id: "P-ECG".into(),
        name: "Test^Chest".into(),
        sex: "M".into(),
        birth_date: "19600101".into(),
    };
    let ecg = harness::samples::demo_ecg(&dir.path().join("ecg"), &patient).unwrap();
    wait_for_specialties(&agent).await;
    let offered: Vec<String> = agent
        .handle
        .specialties
        .list()
        .unwrap()
        .iter()
        .map(|s| s.name(true).to_owned())
        .collect();
    assert_eq!(
        offered,
        ["放射科", "心内科"],
        "the roster's specialties, named in Chinese"
    );

    let clinic = format!("http://{}", daemon::client::local(agent.web_addr));
    let _one = ONE_BROWSER.lock().await;
    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    let b = tokio::task::spawn_blocking(move || {
        log_in(&b, &clinic, "wang");
        // The doctor works in Chinese.
        b.goto(&format!("{clinic}/lang/zh")).unwrap();
        b.goto(&format!("{clinic}/import")).unwrap();
        let files: Vec<_> = ecg.files.iter().map(|p| p.display().to_string()).collect();
        b.type_into("#files", &files.join("\n")).unwrap();
        b.click("#import").unwrap();
        b.find("#import-results tr[data-outcome=stored]").unwrap();
        b.goto(&format!("{clinic}/cases/new")).unwrap();
        // The study is offered with its date and description, and ticking it fills in the
        // patient from its header.
        let offered = b.text("form fieldset").unwrap_or_default();
        assert!(offered.contains("RESTING ECG"), "{offered}");
        b.click(&format!("input[value='{}']", ecg.study_uid)).unwrap();
        let filled = b
            .script("return [...document.querySelectorAll('[name=patient_id],[name=patient_name],[name=sex],[name=birth_date]')].map(e => e.value)")
            .unwrap();
        assert_eq!(filled, serde_json::json!(["P-ECG", "Test^Chest", "M", "19600101"]));
        b.type_into("textarea[name=question]", "acute ST elevation?").unwrap();
        // The form offers the hospital's list, not free text.
        assert!(
            !b.exists("input[name=specialty]"),
            "no free text once the list is here"
        );
        assert_eq!(choose_specialty(&b, "心内科"), "cardiology");
        b.script("document.querySelector('select[name=urgency]').value = 'emergency'")
            .unwrap();
        b.type_into("input[name=consent_given_by]", "patient")
            .unwrap();
        b.screenshot(&shots().join("routing-1-new-ecg-case.png"))
            .unwrap();
        b.resize(768, 1024).unwrap();
        b.screenshot(&shots().join("routing-1-new-ecg-case-tablet.png"))
            .unwrap();
        b.resize(1366, 768).unwrap();
        b.click_to_next_page("#send").unwrap();
        b.find("ol.timeline").unwrap();
        let url = b.url().unwrap();
        // A study already in a consultation is not offered again.
        b.goto(&format!("{clinic}/cases/new")).unwrap();
        assert!(!b.exists(&format!("input[value='{}']", ecg.study_uid)));
        b.goto(&url).unwrap();
        b
    })
    .await
    .unwrap();
    let url = b.url().unwrap();
    let ecg_case = ConsultationId::parse(url.rsplit('/').next().unwrap())
        .unwrap_or_else(|| panic!("the form leads to the new case's page, not {url}"));

    // Typed as a name the roster does not know, before the clinic had the list.
    let unknown = ConsultationId::new(daemon::now_ms() as u64, [5; 10]);
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    harness::people::send_request(
        &agent.handle.consult,
        &jinzhou,
        &unknown,
        "P-2",
        "神经内科",
        Urgency::Urgent,
    );

    let site = gw.handle.consult.clone();
    let (a, u) = (ecg_case.clone(), unknown.clone());
    let settled = move || {
        let get = |id: &ConsultationId| site.log.get(id).unwrap().map(|f| f.consultation);
        let (ecg, unknown) = (get(&a), get(&u));
        ecg.is_some_and(|c| c.state == State::Assigned)
            && unknown.is_some_and(|c| c.unrouted.is_some())
    };
    assert!(
        wait_until(Duration::from_secs(60), settled).await,
        "the ECG case is assigned and the unknown one waits unrouted"
    );
    let got = |id: &ConsultationId| gw.handle.consult.log.get(id).unwrap().unwrap().consultation;
    let c = got(&ecg_case);
    assert_eq!(c.specialty, "cardiology");
    assert_eq!(c.urgency, Urgency::Emergency);
    assert_eq!(
        c.assignee.as_deref(),
        Some("zhang"),
        "the on-duty cardiologist"
    );
    let u = got(&unknown);
    assert_eq!(u.assignee, None, "not given to radiology by the catch-all");
    assert_eq!(u.state, State::Delivered);

    // The administrator sees why it waits.
    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    let unknown_id = unknown.to_string();
    tokio::task::spawn_blocking(move || {
        log_in(&b, &hospital, "chen");
        b.goto(&format!("{hospital}/admin/alerts")).unwrap();
        let alerts = b.text("body").unwrap();
        assert!(
            alerts.contains(&unknown_id) && alerts.contains("神经内科"),
            "the alert names the case and the specialty: {alerts}"
        );
        b.screenshot(&shots().join("routing-2-unrouted-alert.png"))
            .unwrap();
        b.resize(768, 1024).unwrap();
        b.screenshot(&shots().join("routing-2-unrouted-alert-tablet.png"))
            .unwrap();
    })
    .await
    .unwrap();
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// One radiologist, with report templates for radiology.
const RADIOLOGIST_WITH_TEMPLATES: &str = r#"
[[specialist]]
id = "li"
name = "Li Wei"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 12
utc_offset = "+08:00"
duty = ["daily 00:00-24:00"]

[[pool]]
id = "radiology"
members = ["li"]
lead = "li"

[[rule]]
id = "all"
pool = "radiology"

[[template]]
specialty = "radiology"
name = "CT head, normal"
findings = "No intracranial haemorrhage. Ventricles normal."
impression = "Normal CT head."
"#;

/// Waits until the draft form `css` has been saved since its last change.
fn wait_saved(b: &Browser, css: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !b.exists(&format!("{css}[data-saved]")) {
        assert!(
            std::time::Instant::now() < deadline,
            "{css} was never saved as a draft"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 16, item 4: nothing typed is lost. The doctor's half-typed answer outlives the
/// page's own refresh and a reload; the specialist's report outlives a restart of the
/// gateway; a template starts a report; signing shows a preview and asks for the password
/// again, and a wrong one signs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_typed_is_lost_and_signing_asks_for_the_password_after_a_preview() {
    let Pilot {
        dir,
        gw_config,
        gw,
        agent,
    } = pilot(Some(RADIOLOGIST_WITH_TEMPLATES), true);
    let agent = agent.unwrap();
    let specialist = harness::people::radiologist();
    sign_up(&gw.handle.accounts, specialist.clone());
    let id = ConsultationId::new(daemon::now_ms() as u64, [6; 10]);
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    harness::people::send_request(
        &agent.handle.consult,
        &jinzhou,
        &id,
        "P-9",
        "radiology",
        Urgency::Urgent,
    );
    let state =
        |site: &daemon::replicate::Site| site.log.get(&id).unwrap().map(|f| f.consultation.state);
    let site = gw.handle.consult.clone();
    assert!(
        wait_until(Duration::from_secs(60), || state(&site)
            == Some(State::Assigned))
        .await,
        "the case reaches li"
    );

    // The specialist accepts it and asks the clinic a question.
    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    let _one = ONE_BROWSER.lock().await;
    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    let case = id.clone();
    let b = tokio::task::spawn_blocking(move || {
        log_in(&b, &hospital, "li");
        b.goto(&format!("{hospital}/cases/{case}")).unwrap();
        b.click_to_next_page("#accept").unwrap();
        b.find("#ask-form").unwrap();
        b.type_into(
            "#ask-form textarea[name=text]",
            "Which side was the fall on?",
        )
        .unwrap();
        b.click_to_next_page("#ask-form button").unwrap();
        b.find("#report-form").unwrap();
        b
    })
    .await
    .unwrap();
    let clinic_site = agent.handle.consult.clone();
    assert!(
        wait_until(Duration::from_secs(30), || state(&clinic_site)
            == Some(State::AwaitingAnswer))
        .await,
        "the question reaches the clinic"
    );

    // The doctor starts an answer, looks elsewhere on the page, and the page's 15-second
    // refresh comes and goes; then the browser reloads the page.
    let clinic = format!("http://{}", daemon::client::local(agent.web_addr));
    let half = "Left side, about two hours ago; he";
    let case = id.clone();
    let b = tokio::task::spawn_blocking(move || {
        log_in(&b, &clinic, "wang");
        b.goto(&format!("{clinic}/cases/{case}")).unwrap();
        b.type_into("form.answer textarea[name=text]", half)
            .unwrap();
        b.script("window.__same_page = 1; document.activeElement.blur();")
            .unwrap();
        wait_saved(&b, "form.answer");
        std::thread::sleep(Duration::from_secs(17));
        let same = b.script("return window.__same_page === 1").unwrap();
        assert_eq!(
            same,
            serde_json::json!(true),
            "the refresh left the page alone"
        );
        let kept = b
            .script("return document.querySelector('form.answer textarea').value")
            .unwrap();
        assert_eq!(kept, serde_json::json!(half));
        b.goto(&format!("{clinic}/cases/{case}")).unwrap();
        let reloaded = b
            .script("return document.querySelector('form.answer textarea').value")
            .unwrap();
        assert_eq!(
            reloaded,
            serde_json::json!(half),
            "the draft fills the form again"
        );
        b.screenshot(&shots().join("drafts-1-clinic-answer.png"))
            .unwrap();
        b.resize(768, 1024).unwrap();
        b.screenshot(&shots().join("drafts-1-clinic-answer-tablet.png"))
            .unwrap();
        b.resize(1366, 768).unwrap();
        // Sent, the draft is gone.
        b.type_into("form.answer textarea[name=text]", " fell on the left.")
            .unwrap();
        b.click_to_next_page("form.answer button").unwrap();
        b
    })
    .await
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || state(&site)
            == Some(State::Accepted))
        .await,
        "the answer reaches the hospital"
    );
    assert!(
        agent
            .handle
            .drafts
            .load("wang", id.as_str(), "answer-1")
            .is_empty()
            && agent
                .handle
                .cases()
                .answer_drafts(
                    &agent.handle.accounts.get("wang").unwrap().unwrap(),
                    &id,
                    [1, 2, 3, 4, 5, 6, 7, 8]
                )
                .is_empty(),
        "a sent answer leaves no draft"
    );

    // The specialist starts from a template and changes the impression; the draft is kept.
    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    let typed = "Normal CT head. No fracture seen.";
    let case = id.clone();
    let b = tokio::task::spawn_blocking(move || {
        b.goto(&format!("{hospital}/cases/{case}")).unwrap();
        b.click_to_next_page("#templates button").unwrap();
        let findings = b
            .script("return document.querySelector('textarea[name=findings]').value")
            .unwrap();
        assert_eq!(
            findings,
            serde_json::json!("No intracranial haemorrhage. Ventricles normal.")
        );
        b.script("document.querySelector('textarea[name=impression]').value = ''")
            .unwrap();
        b.type_into("textarea[name=impression]", typed).unwrap();
        wait_saved(&b, "#report-form");
        b
    })
    .await
    .unwrap();

    // The gateway restarts (sessions are in memory: li logs in again).
    // The test's own handle on the database goes too.
    drop(site);
    gw.stop().await.unwrap();
    // The stopped gateway's last tasks let go of its database a moment after it stops.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let gw = loop {
        match RunningGateway::start(gw_config.clone()) {
            Ok(gw) => break gw,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the gateway does not start again: {e:#}"),
        }
    };
    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    let case = id.clone();
    let b = tokio::task::spawn_blocking(move || {
        log_in(&b, &hospital, "li");
        b.goto(&format!("{hospital}/cases/{case}")).unwrap();
        let impression = b
            .script("return document.querySelector('textarea[name=impression]').value")
            .unwrap();
        assert_eq!(
            impression,
            serde_json::json!(typed),
            "the draft outlived the restart"
        );
        // The preview shows the report as it will be signed; a wrong password signs nothing.
        b.click_to_next_page("#preview").unwrap();
        assert!(b.text("#report").unwrap().contains(typed));
        b.screenshot(&shots().join("drafts-2-report-preview.png"))
            .unwrap();
        b.resize(768, 1024).unwrap();
        b.screenshot(&shots().join("drafts-2-report-preview-tablet.png"))
            .unwrap();
        b.resize(1366, 768).unwrap();
        b.type_into("#password", "not the password").unwrap();
        b.click_to_next_page("#sign").unwrap();
        let refused = b.text("#action-error").unwrap();
        assert!(!refused.is_empty());
        assert!(!b.exists("#report"), "nothing signed");
        let impression = b
            .script("return document.querySelector('textarea[name=impression]').value")
            .unwrap();
        assert_eq!(
            impression,
            serde_json::json!(typed),
            "the draft is still there"
        );
        b.click_to_next_page("#preview").unwrap();
        b.type_into("#password", PASSWORD).unwrap();
        b.click_to_next_page("#sign").unwrap();
        let report = b.text("#report").unwrap();
        assert!(report.contains(typed), "{report}");
        assert!(!b.exists("#report-form"), "signed: no form left");
        b
    })
    .await
    .unwrap();
    drop(b);
    let c = gw
        .handle
        .consult
        .log
        .get(&id)
        .unwrap()
        .unwrap()
        .consultation;
    assert_eq!(c.state, State::Reported);
    assert_eq!(c.report.unwrap().impression, typed);
    // The audit log holds the failed and the good confirmation.
    let log = std::fs::read_to_string(dir.path().join("gateway/data/audit.log")).unwrap();
    assert!(log.contains("\"reauth_failed\"") && log.contains("\"reauth\""));
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// Issue 16, item 9: an ultrasound study sent without a Patient ID is kept (set aside, with
/// its reason), given its patient by the doctor in the browser, and reaches the hospital with
/// the new id and the change recorded in the instance's own Original Attributes Sequence,
/// while the original bytes stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ultrasound_without_a_patient_id_is_kept_reconciled_in_the_browser_and_sent() {
    use dicom_dictionary_std::tags;
    use sha2::Digest;

    let Pilot { dir, gw, agent, .. } = pilot(None, true);
    let agent = agent.unwrap();
    // The cart sends an empty Patient ID: an emergency, nobody typed it.
    let nobody = harness::samples::DemoPatient {
        id: String::new(),
        name: String::new(),
        sex: String::new(),
        birth_date: String::new(),
    };
    let us = harness::samples::demo_us_cine(&dir.path().join("us"), &nobody, 4).unwrap();
    let original = std::fs::read(&us.files[0]).unwrap();

    let clinic = format!("http://{}", daemon::client::local(agent.web_addr));
    let _one = ONE_BROWSER.lock().await;
    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    let file = us.files[0].display().to_string();
    let study_uid = us.study_uid.clone();
    tokio::task::spawn_blocking(move || {
        log_in(&b, &clinic, "wang");
        b.goto(&format!("{clinic}/import")).unwrap();
        b.type_into("#files", &file).unwrap();
        b.click("#import").unwrap();
        b.find("#import-results tr[data-outcome=quarantined]")
            .unwrap();
        b.goto(&format!("{clinic}/set-aside")).unwrap();
        let form = format!("form.reconcile[data-study='{study_uid}']");
        b.find(&form).unwrap();
        assert!(
            b.text("#set-aside").unwrap().contains("Patient ID"),
            "the reason is shown"
        );
        b.screenshot(&shots().join("reconcile-1-set-aside.png"))
            .unwrap();
        b.resize(768, 1024).unwrap();
        b.screenshot(&shots().join("reconcile-1-set-aside-tablet.png"))
            .unwrap();
        let overflow = b.overflow_x().unwrap();
        b.resize(1366, 768).unwrap();
        assert!(
            overflow <= 0,
            "the page is {overflow} px too wide for a tablet"
        );
        b.type_into(&format!("{form} input[name=patient_id]"), "P-US-7")
            .unwrap();
        b.type_into(
            &format!("{form} input[name=patient_name]"),
            "Unknown^Emergency",
        )
        .unwrap();
        b.click(&format!("{form} button")).unwrap();
        b.find("#set-aside span[data-reconciled='P-US-7']").unwrap();
        assert!(!b.exists(&form), "nothing is left to give a patient");
        b.screenshot(&shots().join("reconcile-2-given.png"))
            .unwrap();
    })
    .await
    .unwrap();

    // The corrected instance reaches the hospital.
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    let archive = gw.handle.archive.clone();
    let studies = vec![us.study_uid.clone()];
    let arrived = || {
        archive
            .study_instances(&jinzhou, &studies)
            .unwrap_or_default()
            .first()
            .map(|(_, rec)| rec.object.clone())
    };
    assert!(
        wait_until(Duration::from_secs(60), || arrived().is_some()).await,
        "the corrected study reaches the gateway"
    );
    let object = arrived().unwrap();
    let stored = dicom_object::open_file(gw.stored_file(&object).unwrap()).unwrap();
    let text = |obj: &dicom_object::mem::InMemDicomObject, tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok().map(|s| s.trim().to_owned()))
            .unwrap_or_default()
    };
    assert_eq!(text(&stored, tags::PATIENT_ID), "P-US-7");
    assert_eq!(text(&stored, tags::PATIENT_NAME), "Unknown^Emergency");
    // Its history: what was replaced (nothing: an empty id), when, by what, why.
    let history = stored
        .element(tags::ORIGINAL_ATTRIBUTES_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .to_vec();
    assert_eq!(history.len(), 1);
    assert_eq!(
        text(&history[0], tags::REASON_FOR_THE_ATTRIBUTE_MODIFICATION),
        "CORRECT"
    );
    assert!(text(&history[0], tags::MODIFYING_SYSTEM).contains("jinzhou"));
    let replaced = history[0]
        .element(tags::MODIFIED_ATTRIBUTES_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .to_vec();
    assert_eq!(
        text(&replaced[0], tags::PATIENT_ID),
        "",
        "the id it had: none"
    );
    // The same images, and the original bytes kept as they came.
    assert_eq!(text(&stored, tags::STUDY_INSTANCE_UID), us.study_uid);
    let kept: Vec<_> = std::fs::read_dir(agent.handle.store.quarantine_dir())
        .unwrap()
        .map(|e| e.unwrap().path().join("file.dcm"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        sha2::Sha256::digest(std::fs::read(&kept[0]).unwrap()),
        sha2::Sha256::digest(&original),
        "the original bytes are unchanged"
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// Whether the viewer's frame has arrived and been decoded.
const FRAME_SHOWN: &str =
    "const i = document.querySelector('#image'); return i.complete && i.naturalWidth > 0;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_specialist_scrolls_a_ct_and_a_cine_loop_and_reads_a_12_lead_ecg_without_the_page_reloading(
) {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let config = with_routing(&pilot.gateway_config(link).unwrap(), ONE_RADIOLOGIST).unwrap();
    let gw = RunningGateway::start(config).unwrap();
    sign_up(
        &gw.handle.accounts,
        person("li", Role::Specialist, "Dr Li", Some("li"), None),
    );
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot.agent_config("jinzhou", &bundle, link).unwrap(),
        Default::default(),
    )
    .unwrap();
    let doctor = sign_up(
        &agent.handle.accounts,
        person("wang", Role::Doctor, "Dr Wang", None, None),
    );
    // The pilot's own head CT and 12-lead ECG, of a made-up patient.
    let patient = harness::samples::DemoPatient {
        id: "P-VIEW".into(),
        name: "TEST^VIEWER".into(),
        sex: "O".into(),
        birth_date: "19700101".into(),
    };
    let ct = harness::samples::demo_ct_head(&dir.path().join("ct"), &patient, 24).unwrap();
    let ecg = harness::samples::demo_ecg(&dir.path().join("ecg"), &patient).unwrap();
    let cine = harness::samples::demo_us_cine(&dir.path().join("us"), &patient, 12).unwrap();
    let handle = agent.handle.clone();
    let files: Vec<PathBuf> = ct
        .files
        .iter()
        .chain(&ecg.files)
        .chain(&cine.files)
        .cloned()
        .collect();
    tokio::task::spawn_blocking(move || {
        for f in &files {
            handle.ingest_file(f).unwrap();
        }
    })
    .await
    .unwrap();
    let body = json!({
        "patient": {"id": "P-VIEW", "name": "", "sex": "", "birth_date": ""},
        "question": "q?", "specialty": "radiology", "urgency": "urgent",
        "consent": {"given_by": "patient", "method": "written"},
        "studies": [ct.study_uid, cine.study_uid, ecg.study_uid], "submit": true,
    });
    let (status, answer) = harness::http(
        daemon::client::local(agent.web_addr),
        "POST",
        "/api/v1/consultations",
        Some(&doctor),
        Some(&body.to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let id = ConsultationId::parse(answer["consultation"]["id"].as_str().unwrap()).unwrap();
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    let (archive, site) = (gw.handle.archive.clone(), gw.handle.consult.clone());
    let case = id.clone();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let arrived: u64 = archive.studies(&jinzhou).iter().map(|s| s.instances).sum();
            let assigned = site
                .log
                .get(&case)
                .unwrap()
                .is_some_and(|f| f.consultation.assignee.is_some());
            arrived == 26 && assigned
        })
        .await,
        "the CT, the cine loop and the ECG reach the hospital and the case is assigned"
    );

    let _one = ONE_BROWSER.lock().await;
    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    tokio::task::spawn_blocking(move || {
        log_in(&b, &hospital, "li");
        b.goto(&format!("{hospital}/cases/{id}/viewer")).unwrap();
        // The series, not the instances, are listed: the CT, the cine loop, the ECG.
        b.find("#series").unwrap();
        let listed = b
            .script("return Array.from(document.querySelectorAll('#series li')).map(l => l.textContent)")
            .unwrap();
        let listed: Vec<String> = serde_json::from_value(listed).unwrap();
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert!(listed[0].contains("CT") && listed[0].contains("24"), "{listed:?}");
        assert!(listed[1].contains("US") && listed[1].contains('1'), "{listed:?}");
        assert!(listed[2].contains("ECG"), "{listed:?}");
        b.wait_for(FRAME_SHOWN, &json!(true)).unwrap();
        assert_eq!(b.text("#slice-no").unwrap(), "1/24");
        // CT windows are offered for a CT.
        for preset in ["-600,1500", "40,400", "400,1800", "40,80"] {
            assert!(b.exists(&format!("button[data-preset='{preset}']")), "{preset}");
        }
        // From here on, any page load would lose this mark.
        b.script("window.__viewerMark = 'kept'; return 1").unwrap();
        b.click("button[data-preset='-600,1500']").unwrap();
        let slice_no = "return document.querySelector('#slice-no').textContent";
        for _ in 0..3 {
            b.wheel("#stage", 100).unwrap();
        }
        b.wait_for(slice_no, &json!("4/24")).unwrap();
        b.wheel("#stage", -100).unwrap();
        b.wait_for(slice_no, &json!("3/24")).unwrap();
        for (key, want) in [
            (keys::ARROW_DOWN, "4/24"),
            (keys::ARROW_RIGHT, "5/24"),
            (keys::ARROW_UP, "4/24"),
            (keys::ARROW_LEFT, "3/24"),
            (keys::END, "24/24"),
            (keys::HOME, "1/24"),
            (keys::PAGE_DOWN, "3/24"),
            (keys::PAGE_UP, "1/24"),
            (keys::PAGE_DOWN, "3/24"),
            (keys::ARROW_DOWN, "4/24"),
        ] {
            b.press("#stage", key).unwrap();
            b.wait_for(slice_no, &json!(want)).unwrap();
        }
        // The slider follows.
        assert_eq!(b.script("return document.querySelector('#slice').value").unwrap(), "4");
        // A finger drawn up the image moves on through the stack, as on a tablet.
        b.swipe("#stage", -60).unwrap();
        let after = b.script(slice_no).unwrap();
        let after: usize = after.as_str().unwrap().split('/').next().unwrap().parse().unwrap();
        assert!(after > 4, "a swipe up went from slice 4 to {after}");
        b.press("#stage", keys::HOME).unwrap();
        for _ in 0..3 {
            b.press("#stage", keys::ARROW_DOWN).unwrap();
        }
        b.wait_for(slice_no, &json!("4/24")).unwrap();
        // The window chosen before scrolling is the one the slice is rendered with.
        let src = b.script("return document.querySelector('#image').getAttribute('src')").unwrap();
        let src = src.as_str().unwrap().to_owned();
        assert!(src.contains("frame=0&wc=-600&ww=1500"), "{src}");
        assert!(src.starts_with(&format!("/cases/{id}/images/3?o=")), "{src}");
        b.wait_for(FRAME_SHOWN, &json!(true)).unwrap();
        // The slice's place in the patient: ImagePositionPatient z of the 4th slice, 15 mm.
        let position = b.text("#slice-pos").unwrap();
        assert!(position.contains("15.0 mm"), "{position}");
        assert!(b.text("#wl").unwrap().contains("W 1500 L -600"));
        // A left-drag sets its own window (wider to the right, level up and down), kept on the
        // next slice too.
        b.drag("#stage", 40, 20).unwrap();
        let wl = b.text("#wl").unwrap();
        assert!(wl.starts_with("W ") && wl != "W 1500 L -600", "{wl}");
        b.press("#stage", keys::ARROW_DOWN).unwrap();
        b.wait_for(slice_no, &json!("5/24")).unwrap();
        assert_eq!(b.text("#wl").unwrap(), wl, "the dragged window is kept");
        let (wc, ww) = (
            b.script("return document.querySelector('#image').getAttribute('data-wc')").unwrap(),
            b.script("return document.querySelector('#image').getAttribute('data-ww')").unwrap(),
        );
        let window = format!("&wc={}&ww={}", wc.as_str().unwrap(), ww.as_str().unwrap());
        b.wait_for(
            &format!("return document.querySelector('#image').getAttribute('src').endsWith('{window}')"),
            &json!(true),
        )
        .unwrap();
        // No page was loaded since the mark: the same document, one navigation.
        assert_eq!(b.script("return window.__viewerMark").unwrap(), "kept");
        assert_eq!(
            b.script("return performance.getEntriesByType('navigation').length").unwrap(),
            1
        );
        shot(&b, "viewer-1-ct");
        // A cine loop: its frames are the stack, scrolled the same way; only the image's own
        // window is offered for ultrasound.
        b.click("#series a[data-series='1']").unwrap();
        b.wait_for(slice_no, &json!("1/12")).unwrap();
        b.wait_for(FRAME_SHOWN, &json!(true)).unwrap();
        assert!(!b.exists("button[data-preset='-600,1500']"), "no CT windows for US");
        b.wheel("#stage", 100).unwrap();
        b.press("#stage", keys::ARROW_DOWN).unwrap();
        b.wait_for(slice_no, &json!("3/12")).unwrap();
        let src = b.script("return document.querySelector('#image').getAttribute('src')").unwrap();
        assert!(src.as_str().unwrap().ends_with("&frame=2"), "{src}");
        b.wait_for(FRAME_SHOWN, &json!(true)).unwrap();
        // The ECG series: the SVG with its twelve leads and the rhythm strip; gain and speed,
        // no window presets.
        b.click("#series a[data-series='2']").unwrap();
        b.find("#waveform").unwrap();
        b.wait_for(
            "const i = document.querySelector('#waveform'); return i.complete && i.naturalWidth > 0;",
            &json!(true),
        )
        .unwrap();
        assert!(!b.exists("[data-preset]"), "no window presets for an ECG");
        let labels = b
            .script(
                "return fetch(document.querySelector('#waveform').src)
                   .then(r => r.text())
                   .then(t => Array.from(new DOMParser().parseFromString(t, 'image/svg+xml')
                     .querySelectorAll('text.lead')).map(e => e.textContent))",
            )
            .unwrap();
        let labels: Vec<String> = serde_json::from_value(labels).unwrap();
        assert_eq!(labels.len(), 13, "{labels:?}");
        for lead in daemon::waveform::TWELVE_LEADS {
            assert!(labels.iter().any(|l| l == lead), "lead {lead} in {labels:?}");
        }
        b.script("window.__viewerMark = 'ecg'; return 1").unwrap();
        b.click("a[data-gain='20']").unwrap();
        b.wait_for(
            "return document.querySelector('#waveform').getAttribute('src').includes('gain=20&speed=25')",
            &json!(true),
        )
        .unwrap();
        assert_eq!(b.script("return window.__viewerMark").unwrap(), "ecg");
        b.click("a[data-gain='10']").unwrap();
        shot(&b, "viewer-2-ecg");
    })
    .await
    .unwrap();
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// The longest run of English words in `text` (words of letters, with the punctuation that
/// ends a clause): a sentence from the server that nobody translated.
fn english_runs(text: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    let mut close = |run: &mut Vec<&str>| {
        if run.len() >= 4 {
            runs.push(run.join(" "));
        }
        run.clear();
    };
    for token in text.split_whitespace() {
        let word = token
            .trim_start_matches(['(', '"', '\''])
            .trim_end_matches([',', '.', ';', ':', '!', '?', ')', '"', '\'']);
        if !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '\'' || c == '-')
        {
            run.push(word);
            // A clause ends with its punctuation.
            if token.ends_with([';', ':', '.', '!', '?']) {
                close(&mut run);
            }
        } else {
            close(&mut run);
        }
    }
    close(&mut run);
    runs
}

/// Issue 16, item 7: a page in Chinese shows no English sentence from the server, whether it
/// is a list, a form, an error page, a refusal, an import rejection, a routing explanation or
/// an alert. The people and their data are named in Chinese here, so any English run of words
/// on a page is the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_chinese_show_no_english_sentence_from_the_server() {
    assert_eq!(
        english_runs(
            "缺少 Patient ID， the modality or exporting tool must fill it in; li (0 open)"
        ),
        ["the modality or exporting tool must fill it in"]
    );
    let Pilot { dir, gw, agent, .. } = pilot(Some(TWO_SPECIALTIES), true);
    let agent = agent.unwrap();
    sign_up(
        &gw.handle.accounts,
        person(
            "li",
            Role::Specialist,
            "李医生",
            Some("li"),
            Some("放射科主治医师"),
        ),
    );
    sign_up(
        &gw.handle.accounts,
        person("chen", Role::Admin, "陈工", None, None),
    );
    wait_for_specialties(&agent).await;
    // A case routed to li (its timeline explains why), and one for a specialty the roster does
    // not know (an alert, and its reason on the timeline).
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    let routed = ConsultationId::new(daemon::now_ms() as u64, [7; 10]);
    let unknown = ConsultationId::new(daemon::now_ms() as u64 + 1, [8; 10]);
    for (id, specialty) in [(&routed, "放射科"), (&unknown, "神经内科")] {
        harness::people::send_request(
            &agent.handle.consult,
            &jinzhou,
            id,
            "P-1",
            specialty,
            Urgency::Urgent,
        );
    }
    let site = gw.handle.consult.clone();
    let (a, u) = (routed.clone(), unknown.clone());
    assert!(
        wait_until(Duration::from_secs(60), move || {
            let get = |id: &ConsultationId| site.log.get(id).unwrap().map(|f| f.consultation);
            get(&a).is_some_and(|c| c.state == State::Assigned)
                && get(&u).is_some_and(|c| c.unrouted.is_some())
        })
        .await,
        "both cases reach the hospital"
    );
    // Files the door refuses: not DICOM at all, and an ultrasound without a patient id.
    let junk = dir.path().join("notes.dcm");
    std::fs::write(&junk, b"not a dicom file at all").unwrap();
    let nobody = harness::samples::DemoPatient {
        id: String::new(),
        name: String::new(),
        sex: String::new(),
        birth_date: String::new(),
    };
    let us = harness::samples::demo_us_cine(&dir.path().join("us"), &nobody, 2).unwrap();
    let files = [
        junk.display().to_string(),
        us.files[0].display().to_string(),
    ]
    .join("\n");

    let clinic = format!("http://{}", daemon::client::local(agent.web_addr));
    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    let _one = ONE_BROWSER.lock().await;
    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    let found = tokio::task::spawn_blocking(move || {
        let mut found: Vec<String> = Vec::new();
        let mut check = |b: &Browser, what: &str| {
            let text = b.text("body").unwrap_or_default();
            for run in english_runs(&text) {
                found.push(format!("{what}: {run}"));
            }
            // Named by what was looked at, never by a case's id.
            let name = format!(
                "chinese-{}",
                what.replace(routed.as_str(), "routed-case")
                    .replace(unknown.as_str(), "unrouted-case")
                    .replace(['/', ' ', '?', '='], "-")
            );
            shot(b, &name);
        };
        log_in(&b, &clinic, "wang");
        b.goto(&format!("{clinic}/lang/zh")).unwrap();
        for path in ["/", "/cases/new", "/set-aside", "/cases/nonsense"] {
            b.goto(&format!("{clinic}{path}")).unwrap();
            check(&b, &format!("clinic {path}"));
        }
        b.goto(&format!("{clinic}/import")).unwrap();
        b.type_into("#files", &files).unwrap();
        b.click_to_next_page("#import").unwrap();
        check(&b, "clinic import rejections");
        b.goto(&format!("{clinic}/set-aside")).unwrap();
        check(&b, "clinic set-aside with files");
        b.goto(&format!("{clinic}/cases/{routed}")).unwrap();
        check(&b, "clinic case");
        // A refusal: the consent form sent empty, past the browser's own check.
        b.goto(&format!("{clinic}/cases/new")).unwrap();
        b.script(
            "document.querySelectorAll('[required]').forEach(e => e.removeAttribute('required'))",
        )
        .unwrap();
        b.click_to_next_page("#send").unwrap();
        check(&b, "clinic new case refused");

        log_in(&b, &hospital, "li");
        b.goto(&format!("{hospital}/lang/zh")).unwrap();
        for path in [
            "/worklist".to_owned(),
            format!("/cases/{routed}"),
            format!("/cases/{unknown}"),
            "/cases/nonsense".to_owned(),
            "/admin/users".to_owned(),
        ] {
            b.goto(&format!("{hospital}{path}")).unwrap();
            check(&b, &format!("gateway {path} as a specialist"));
        }
        // A refused action: signing without the password.
        b.goto(&format!("{hospital}/cases/{routed}")).unwrap();
        b.click_to_next_page("#accept").unwrap();
        b.type_into("textarea[name=impression]", "未见异常")
            .unwrap();
        b.click_to_next_page("#preview").unwrap();
        check(&b, "gateway report preview");
        b.type_into("#password", "错误的密码").unwrap();
        b.click_to_next_page("#sign").unwrap();
        check(&b, "gateway signing refused");
        b.goto(&format!("{hospital}/worklist")).unwrap();
        b.click_to_next_page("form[action='/logout'] button")
            .unwrap();

        log_in(&b, &hospital, "chen");
        b.goto(&format!("{hospital}/lang/zh")).unwrap();
        for path in [
            "/admin/alerts".to_owned(),
            "/admin/links".to_owned(),
            "/admin/users".to_owned(),
            "/admin/audit".to_owned(),
            "/admin/roster".to_owned(),
            format!("/cases/{unknown}"),
        ] {
            b.goto(&format!("{hospital}{path}")).unwrap();
            check(&b, &format!("gateway {path} as an administrator"));
        }
        found
    })
    .await
    .unwrap();
    assert!(
        found.is_empty(),
        "English from the server on Chinese pages:\n{}",
        found.join("\n")
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// Issue 16, "Administrator pages": the alerts are a table with headers, each linked to what
/// it is about and dated; an administrator acknowledges one (it stays, greyed, below the
/// others, with who and when); on the roster page a specialist is moved into a pool and the
/// file on disk, as the router reads it, says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_acknowledges_an_alert_and_moves_a_specialist_into_a_pool() {
    let commented = format!("# Edited by hand before the pages.\n{TWO_SPECIALTIES}");
    let Pilot {
        dir, gw_config, gw, ..
    } = pilot(Some(&commented), false);
    let roster = gw_config.data_dir.join("routing.toml");
    sign_up(
        &gw.handle.accounts,
        person("chen", Role::Admin, "Chen (IT)", None, None),
    );
    // A clinic whose link has been down for two hours, after twenty minutes of traffic.
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    let now = daemon::now_ms();
    let board = &gw.handle.board;
    board.up(&jinzhou, now - 150 * 60_000, "0.1.0", None);
    for minute in 0..=20 {
        let at = now - 140 * 60_000 + minute * 60_000;
        board.sample(
            &jinzhou,
            at,
            35.0 + minute as f64,
            Some(0.0),
            minute as u64 * 90_000,
        );
    }
    board.down(&jinzhou, now - 120 * 60_000);
    // A case in a specialty the roster does not know: it waits, unrouted.
    let unknown = ConsultationId::new(now as u64, [6; 10]);
    let site = gw.handle.consult.clone();
    for kind in request("P-7", "神经内科", Urgency::Urgent, now) {
        site.log
            .append(
                &jinzhou,
                proto::consult::Side::Clinic,
                &unknown,
                "dr",
                now,
                kind,
            )
            .unwrap();
    }
    site.append(
        &jinzhou,
        &unknown,
        "system",
        now,
        proto::consult::EventKind::Delivered,
    )
    .unwrap();
    let (s, u) = (site.clone(), unknown.clone());
    assert!(
        wait_until(Duration::from_secs(60), move || s
            .log
            .get(&u)
            .unwrap()
            .is_some_and(|f| f.consultation.unrouted.is_some()))
        .await,
        "the case waits unrouted"
    );

    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    let _one = ONE_BROWSER.lock().await;
    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    let case_id = unknown.to_string();
    let b = tokio::task::spawn_blocking(move || {
        log_in(&b, &hospital, "chen");
        b.goto(&format!("{hospital}/admin/alerts")).unwrap();
        let headers = b
            .script("return [...document.querySelectorAll('#alerts thead th')].length")
            .unwrap();
        assert_eq!(headers, json!(5), "kind, about, detail, raised at, action");
        b.find(&format!("#alerts a[href='/cases/{case_id}']"))
            .unwrap();
        b.find("#alerts a[href='/admin/links#clinic-jinzhou']")
            .unwrap();
        assert!(
            b.exists("tr[data-kind='alerts.link_down'] td time"),
            "dated"
        );
        shot(&b, "admin-1-alerts");
        let unrouted = "tr[data-kind='alerts.unrouted']";
        b.click_to_next_page(&format!(
            "{unrouted} form[action='/admin/alerts/ack'] button"
        ))
        .unwrap();
        let acked = b.text(&format!("{unrouted}.acknowledged")).unwrap();
        assert!(acked.contains("chen"), "who acknowledged it: {acked}");
        let last = b
            .script("return document.querySelector('#alerts tbody tr:last-child').dataset.kind")
            .unwrap();
        assert_eq!(
            last,
            json!("alerts.unrouted"),
            "acknowledged alerts go below"
        );
        assert!(
            !b.exists("tr[data-kind='alerts.link_down'].acknowledged"),
            "only the one acknowledged"
        );
        shot(&b, "admin-2-alert-acknowledged");
        // The clinic's alert leads to its row on the link board, with charts that have axes.
        b.click_to_next_page("#alerts a[href='/admin/links#clinic-jinzhou']")
            .unwrap();
        b.find("tr#clinic-jinzhou").unwrap();
        let charts = b.text("section.card").unwrap();
        assert!(charts.contains("ms"), "{charts}");
        assert!(
            b.exists("svg.chart text.x-label") && b.exists("svg.chart text.y-label"),
            "both axes labelled"
        );
        shot(&b, "admin-3-links");

        // Li reads cardiology too, from now on.
        b.goto(&format!("{hospital}/admin/roster")).unwrap();
        b.find("tr[data-specialist='zhang']").unwrap();
        shot(&b, "admin-4-roster");
        let cardiology = "tr[data-pool='cardiology']";
        b.script(&format!(
            "document.querySelector(\"{cardiology} select[name=specialist]\").value = 'li'"
        ))
        .unwrap();
        b.click_to_next_page(&format!(
            "{cardiology} form[action='/admin/roster/pool/add'] button"
        ))
        .unwrap();
        b.find(&format!("{cardiology} li[data-member='li']"))
            .unwrap();
        // Duty hours the file would refuse are refused with the file's words.
        let duty = "tr[data-specialist='zhang'] input[name=duty]";
        b.script(&format!(
            "document.querySelector(\"{duty}\").value = 'mon-fri 8-17'"
        ))
        .unwrap();
        b.click_to_next_page("tr[data-specialist='zhang'] form button")
            .unwrap();
        let refused = b.text("p.error").unwrap();
        assert!(refused.contains("mon-fri 08:00-17:00"), "{refused}");
        let kept = b
            .script(&format!("return document.querySelector(\"{duty}\").value"))
            .unwrap();
        assert_eq!(
            kept,
            json!("mon-fri 8-17"),
            "what was typed stays to be corrected"
        );
        shot(&b, "admin-5-roster-refused");
        b
    })
    .await
    .unwrap();
    drop(b);
    let text = std::fs::read_to_string(&roster).unwrap();
    assert!(
        text.starts_with("# Edited by hand before the pages."),
        "{text}"
    );
    assert!(text.contains(r#"members = ["zhang", "li"]"#), "{text}");
    assert!(
        !text.contains("8-17"),
        "the refused hours are not written: {text}"
    );
    let router = gw.handle.router.clone().unwrap();
    let members = tokio::task::spawn_blocking(move || {
        router.reload().unwrap().pools["cardiology"].members.clone()
    })
    .await
    .unwrap();
    assert_eq!(members, ["zhang", "li"], "the router reads the change");
    let audit = std::fs::read_to_string(dir.path().join("gateway/data/audit.log")).unwrap();
    assert!(audit.contains("\"alert_ack\""), "{audit}");
    assert!(audit.contains("pool cardiology + li"), "{audit}");
    gw.stop().await.unwrap();
}

/// Issue 16, item 5: the audit log holds a row for each kind of event people rely on it for —
/// logins, failed logins, lock-outs, logouts, refused access, every account change, a role
/// change, a roster change, an acknowledged alert, reads of patient data — each shown in words
/// in the reader's language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_holds_every_kind_of_event_in_words() {
    let Pilot { dir: _dir, gw, .. } = pilot(Some(TWO_SPECIALTIES), false);
    for (name, role, specialist) in [
        ("li", Role::Specialist, Some("li")),
        ("chen", Role::Admin, None),
    ] {
        sign_up(
            &gw.handle.accounts,
            person(name, role, name, specialist, Some("主治医师")),
        );
    }
    // A cardiology case (zhang's, not li's) and one the roster cannot route (an alert).
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    let now = daemon::now_ms();
    let theirs = ConsultationId::new(now as u64, [4; 10]);
    let unknown = ConsultationId::new(now as u64 + 1, [5; 10]);
    let site = gw.handle.consult.clone();
    for (id, specialty) in [(&theirs, "心内科"), (&unknown, "神经内科")] {
        for kind in request("P-5", specialty, Urgency::Urgent, now) {
            site.log
                .append(&jinzhou, proto::consult::Side::Clinic, id, "dr", now, kind)
                .unwrap();
        }
        site.append(&jinzhou, id, "system", now, EventKind::Delivered)
            .unwrap();
    }
    let (s, t, u) = (site.clone(), theirs.clone(), unknown.clone());
    assert!(
        wait_until(Duration::from_secs(60), move || {
            let get = |id: &ConsultationId| s.log.get(id).unwrap().map(|f| f.consultation);
            get(&t).is_some_and(|c| c.assignee.as_deref() == Some("zhang"))
                && get(&u).is_some_and(|c| c.unrouted.is_some())
        })
        .await,
        "one case is zhang's, the other waits unrouted"
    );

    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    let _one = ONE_BROWSER.lock().await;
    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    let shown = tokio::task::spawn_blocking(move || {
        // Someone guesses a password until the name is locked.
        for _ in 0..7 {
            b.goto(&format!("{hospital}/login")).unwrap();
            b.set_field("input[name=user]", "ghost").unwrap();
            b.set_field("input[name=password]", "not the password").unwrap();
            b.click_to_next_page("form[action='/login'] button").unwrap();
        }
        // A specialist opens a case that is not theirs, then logs out.
        log_in(&b, &hospital, "li");
        b.goto(&format!("{hospital}/cases/{theirs}")).unwrap();
        b.goto(&format!("{hospital}/worklist")).unwrap();
        b.click_to_next_page("form[action='/logout'] button").unwrap();
        // The administrator works on accounts, the roster and the alerts, in Chinese.
        log_in(&b, &hospital, "chen");
        b.goto(&format!("{hospital}/lang/zh")).unwrap();
        b.goto(&format!("{hospital}/admin/users")).unwrap();
        b.script(
            "const f = document.querySelector(\"form[action='/admin/users']\");
             f.querySelector('[name=name]').value = 'wu';
             f.querySelector('[name=display_name]').value = '吴医生';
             f.querySelector('[name=specialist]').value = 'li';
             f.querySelector('[name=password]').value = 'a long enough password';",
        )
        .unwrap();
        b.click_to_next_page("form[action='/admin/users'] button").unwrap();
        b.type_into(
            "form[action='/admin/users/wu/reset'] input[name=password]",
            "another long password",
        )
        .unwrap();
        b.click_to_next_page("form[action='/admin/users/wu/reset'] button")
            .unwrap();
        b.script("window.confirm = function () { return true; }").unwrap();
        b.click_to_next_page("form[action='/admin/users/wu/deactivate'] button")
            .unwrap();
        b.click_to_next_page("form[action='/admin/users/wu/reactivate'] button")
            .unwrap();
        b.script(
            "const f = document.querySelector(\"form[action='/admin/users/wu/details']\");
             f.closest('details').open = true;
             f.querySelector('[name=role]').value = 'admin';
             f.querySelector('[name=specialist]').value = '';",
        )
        .unwrap();
        b.click_to_next_page("form[action='/admin/users/wu/details'] button")
            .unwrap();
        b.goto(&format!("{hospital}/admin/roster")).unwrap();
        let cardiology = "tr[data-pool='cardiology']";
        b.script(&format!(
            "document.querySelector(\"{cardiology} select[name=specialist]\").value = 'li'"
        ))
        .unwrap();
        b.click_to_next_page(&format!(
            "{cardiology} form[action='/admin/roster/pool/add'] button"
        ))
        .unwrap();
        b.goto(&format!("{hospital}/admin/alerts")).unwrap();
        b.click_to_next_page(
            "tr[data-kind='alerts.unrouted'] form[action='/admin/alerts/ack'] button",
        )
        .unwrap();
        b.goto(&format!("{hospital}/cases/{unknown}")).unwrap();
        b.goto(&format!("{hospital}/admin/audit")).unwrap();
        b.screenshot(&shots().join("audit-1-every-kind.png")).unwrap();
        b.resize(768, 1024).unwrap();
        b.screenshot(&shots().join("audit-1-every-kind-tablet.png"))
            .unwrap();
        b.resize(1366, 768).unwrap();
        b.script(
            "return [...document.querySelectorAll('#audit td[data-action]')].map(td => [td.dataset.action, td.textContent.trim()])",
        )
        .unwrap()
    })
    .await
    .unwrap();
    let rows: Vec<(String, String)> = serde_json::from_value(shown).unwrap();
    for kind in [
        "login",
        "login_failed",
        "login_locked",
        "logout",
        "refused_view",
        "view",
        "user_add",
        "user_reset",
        "user_deactivate",
        "user_reactivate",
        "user_edit",
        "role_change",
        "roster_change",
        "alert_ack",
    ] {
        let row = rows.iter().find(|(action, _)| action == kind);
        let Some((_, words)) = row else {
            panic!("no {kind} row in the audit log: {rows:?}");
        };
        assert!(
            words != kind && !words.is_ascii(),
            "{kind} is shown in words, in Chinese: {words}"
        );
    }
    gw.stop().await.unwrap();
}
