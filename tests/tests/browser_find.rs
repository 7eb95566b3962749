//! Finding cases in a real headless Chromium: the clinic gives each case a short number as it
//! creates it; the specialist finds one by typing part of the patient's name into the
//! worklist's search and sees its number there, flagged new; the number leads to the case on
//! both sides. Screenshots at 1366×768 and on an upright tablet go to `target/screenshots/`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use daemon::accounts::Role;
use harness::people::{new_case, person, sign_up, ONE_RADIOLOGIST};
use harness::webdriver::{log_in, shot, Browser};
use harness::{free_udp_addr, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};
use proto::consult::{ConsultationId, Patient, State, Urgency};

/// A case number as people read it: `PREFIX-YYYY-NNNN`.
fn is_case_number(text: &str) -> bool {
    proto::find::CaseNumber::parse(text).is_some_and(|(_, _, seq)| seq > 0)
        && text.rsplit('-').next().is_some_and(|s| s.len() >= 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_specialist_finds_a_case_by_part_of_the_patients_name_and_reads_its_number() {
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
    let mut agent_config = pilot.agent_config("jinzhou", &bundle, link).unwrap();
    agent_config.case_prefix = Some("JZ".into());
    let agent = RunningAgent::start(agent_config, Default::default()).unwrap();
    sign_up(
        &agent.handle.accounts,
        person("wang", Role::Doctor, "Dr Wang", None, None),
    );
    sign_up(&gw.handle.accounts, harness::people::radiologist());
    // Two cases sent from the clinic; invented patients.
    let handle = agent.handle.clone();
    let cases: Vec<(ConsultationId, Option<String>)> = tokio::task::spawn_blocking(move || {
        let doctor = person("wang", Role::Doctor, "Dr Wang", None, None);
        [("P-501", "Testfamily^Meilin"), ("P-502", "Otherfamily^Jun")]
            .into_iter()
            .map(|(id, name)| {
                let mut request = new_case("radiology", Urgency::Urgent, "fracture?", "", vec![]);
                request.patient = Patient {
                    id: id.into(),
                    name: name.into(),
                    sex: "F".into(),
                    birth_date: "1980-05-01".into(),
                };
                let c = handle
                    .cases()
                    .create(&doctor, request)
                    .unwrap()
                    .consultation;
                (c.id, c.number)
            })
            .collect()
    })
    .await
    .unwrap();
    let (wanted, number) = (cases[0].0.clone(), cases[0].1.clone().unwrap());
    assert!(is_case_number(&number), "{number}");
    assert!(number.starts_with("JZ-"), "the configured prefix: {number}");
    assert_ne!(cases[1].1.as_deref(), Some(number.as_str()));
    let site = gw.handle.consult.clone();
    let ids: Vec<ConsultationId> = cases.iter().map(|(id, _)| id.clone()).collect();
    assert!(
        wait_until(Duration::from_secs(60), || ids.iter().all(|id| site
            .log
            .get(id)
            .unwrap()
            .is_some_and(|f| f.consultation.state == State::Assigned)))
        .await,
        "both cases reach the hospital and are routed to li"
    );

    let clinic = format!("http://{}", daemon::client::local(agent.web_addr));
    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    let b = tokio::task::spawn_blocking(Browser::start)
        .await
        .unwrap()
        .unwrap();
    let (case, other, shown) = (wanted.clone(), cases[1].0.clone(), number.clone());
    tokio::task::spawn_blocking(move || {
        log_in(&b, &hospital, "li").unwrap();
        b.goto(&format!("{hospital}/worklist")).unwrap();
        b.find("#worklist").unwrap();
        let rows = || {
            b.script(
                "return [...document.querySelectorAll('#worklist tbody tr')].map(r => r.getAttribute('data-case'))",
            )
            .unwrap()
        };
        assert_eq!(rows().as_array().unwrap().len(), 2, "{}", rows());
        shot(&b, "find-1-worklist").unwrap();
        // Part of the given name, in other letter case.
        b.type_into("#q", "MEIL").unwrap();
        b.click("#find-submit").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !b.url().unwrap().contains("q=MEIL") {
            assert!(std::time::Instant::now() < deadline, "the search was not sent");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The answer replaces the page: wait for it rather than read the page it replaces.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rows() != serde_json::json!([case.as_str()]) {
            assert!(
                std::time::Instant::now() < deadline,
                "only the case searched for: {}",
                rows()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let row = format!("#worklist tr[data-case='{case}']");
        let number_cell = b.text(&format!("{row} .case-no")).unwrap();
        assert_eq!(number_cell.trim(), shown, "the case number is on the worklist");
        let patient = b.text(&format!("{row} td.patient")).unwrap();
        assert_eq!(patient.trim(), "Testfamily Meilin");
        assert!(b.exists(&format!("{row} [data-flag=new]")), "assigned, not accepted: new");
        assert_eq!(
            b.script("return document.querySelector('#q').value").unwrap(),
            "MEIL",
            "the form keeps what was asked"
        );
        shot(&b, "find-2-worklist-search").unwrap();
        // The number leads to the case.
        b.goto(&format!("{hospital}/cases/{shown}")).unwrap();
        assert!(b.url().unwrap().ends_with(&format!("/cases/{case}")), "{}", b.url().unwrap());
        assert_eq!(b.text("#case-number").unwrap().trim(), shown);
        shot(&b, "find-3-gateway-case").unwrap();
        b.click_to_next_page("form[action='/logout'] button").unwrap();

        // The doctor: the number on the case page and in the clinic's list, and its search.
        log_in(&b, &clinic, "wang").unwrap();
        b.goto(&format!("{clinic}/cases/{case}")).unwrap();
        assert_eq!(b.text("#case-number").unwrap().trim(), shown);
        shot(&b, "find-4-clinic-case").unwrap();
        b.goto(&format!("{clinic}/?q=otherfam")).unwrap();
        let listed = b
            .script("return [...document.querySelectorAll('#cases tbody tr')].map(r => r.getAttribute('data-case'))")
            .unwrap();
        assert_eq!(listed, serde_json::json!([other.as_str()]));
        b.goto(&format!("{clinic}/")).unwrap();
        let cell = b.text(&format!("#cases tr[data-case='{case}'] .case-no")).unwrap();
        assert_eq!(cell.trim(), shown);
        shot(&b, "find-5-clinic-cases").unwrap();
    })
    .await
    .unwrap();
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}
