//! The web pages in a real headless Chromium: a township doctor logs in, imports a study from
//! the browser and sends an emergency consultation; the specialist finds it at the top of the
//! worklist, opens the viewer (the image has real, non-blank pixels), signs a report; the
//! doctor sees the report; an administrator looks at the link board, alerts, users and audit
//! log. Screenshots of every page, at 1366×768 and on an upright tablet, go to
//! `target/screenshots/`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use daemon::accounts::Role;
use harness::people::{person, request, sign_up, ONE_RADIOLOGIST, PASSWORD};
use harness::webdriver::Browser;
use harness::{free_udp_addr, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};
use proto::consult::{ConsultationId, State, Urgency};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

fn log_in(b: &Browser, base: &str, name: &str) {
    b.goto(&format!("{base}/")).unwrap();
    // Anyone without a session lands on the log-in page.
    assert!(b.url().unwrap().contains("/login"), "{}", b.url().unwrap());
    b.type_into("input[name=user]", name).unwrap();
    b.type_into("input[name=password]", PASSWORD).unwrap();
    b.click("form[action='/login'] button").unwrap();
    // The click returns before the browser has followed the answer; going elsewhere sooner
    // would race the session cookie.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.url().unwrap().contains("/login") {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} still at the log-in page: {}",
            b.text("body").unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
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
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let mut gw_config = pilot.gateway_config(link).unwrap();
    let roster = gw_config.data_dir.join("routing.toml");
    std::fs::create_dir_all(&gw_config.data_dir).unwrap();
    std::fs::write(&roster, ONE_RADIOLOGIST).unwrap();
    gw_config.routing = Some(gateway::config::RoutingConfig {
        file: roster,
        check: Duration::from_millis(500),
    });
    let gw = RunningGateway::start(gw_config).unwrap();
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
    // Not the roster's "Li Wei": the report must carry the account's name.
    sign_up(
        &gw.handle.accounts,
        person(
            "li",
            Role::Specialist,
            "Dr Li",
            Some("li"),
            Some("attending radiologist"),
        ),
    );
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
    for kind in request("P-1", "radiology", Urgency::Routine, daemon::now_ms()) {
        agent
            .handle
            .consult
            .append(&jinzhou, &routine, "wang", daemon::now_ms(), kind)
            .unwrap();
    }
    let clinic = format!("http://{}", daemon::client::local(agent.web_addr));
    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    wait_for_specialties(&agent).await;

    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    // Each page at 1366×768, then on a tablet held upright: nothing may need sideways
    // scrolling but what scrolls on its own (a wide table in its box).
    let shot = |b: &Browser, name: &str| {
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
    };
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
        b.click("#sign").unwrap();
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
    tokio::task::spawn_blocking(move || {
        b.goto(&format!("{hospital}/worklist")).unwrap();
        b.click("form[action='/logout'] button").unwrap();
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
name = "Li Wei"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 12
utc_offset = "+08:00"
duty = ["daily 00:00-24:00"]

[[specialist]]
id = "zhang"
name = "Zhang Min"
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
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let mut gw_config = pilot.gateway_config(link).unwrap();
    let roster = gw_config.data_dir.join("routing.toml");
    std::fs::create_dir_all(&gw_config.data_dir).unwrap();
    std::fs::write(&roster, TWO_SPECIALTIES).unwrap();
    gw_config.routing = Some(gateway::config::RoutingConfig {
        file: roster,
        check: Duration::from_millis(500),
    });
    let gw = RunningGateway::start(gw_config).unwrap();
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
        b.click(&format!("input[value='{}']", ecg.study_uid))
            .unwrap();
        b.type_into("textarea[name=question]", "acute ST elevation?")
            .unwrap();
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
        b.click("#send").unwrap();
        b.find("ol.timeline").unwrap();
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
    for kind in request("P-2", "神经内科", Urgency::Urgent, daemon::now_ms()) {
        agent
            .handle
            .consult
            .append(&jinzhou, &unknown, "wang", daemon::now_ms(), kind)
            .unwrap();
    }

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
