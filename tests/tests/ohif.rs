//! OHIF served by the gateway, in a real headless Chromium: the radiologist opens a case's CT
//! from the case page's "Open in OHIF" link; OHIF lists the series and draws the first image
//! (a canvas whose pixels are not all alike; screenshot `target/screenshots/ohif-study.png`),
//! reading DICOMweb with the session's cookie. The same link opened by another specialist
//! shows nothing of the study.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daemon::accounts::Role;
use harness::people::{person, radiologist, sign_up, RadiologyPilot};
use harness::wait_until;
use harness::webdriver::{log_in, shots, Browser};
use serde_json::json;

/// OHIF prepared by `scripts/ohif` into `target/ohif` (run here when the test script has not:
/// it needs npm).
fn ohif() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("target/ohif");
    let status = std::process::Command::new(root.join("scripts/ohif"))
        .arg(&dir)
        .status()
        .expect("scripts/ohif runs");
    assert!(
        status.success(),
        "scripts/ohif prepares OHIF (it needs npm)"
    );
    dir
}

/// The first viewport's canvas has been drawn with an image: its pixels are not all alike.
const IMAGE_DRAWN: &str = "
    const c = document.querySelector('canvas.cornerstone-canvas');
    if (!c || c.width < 16 || c.height < 16) return false;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let lo = 255, hi = 0;
    for (let i = 0; i < d.length; i += 4 * 7) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
    return hi - lo > 40;";

/// Polls `script` in the browser until it returns `true` or `limit` passes.
fn eventually(b: &Browser, script: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if b.script(script).ok() == Some(json!(true)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_specialist_opens_a_case_study_in_ohif_and_another_sees_nothing_of_it() {
    let ohif = ohif();
    let dir = tempfile::tempdir().unwrap();
    let pilot = RadiologyPilot::start(dir.path(), |config| config.web_ohif = Some(ohif)).unwrap();
    let gw = &pilot.gateway;
    sign_up(&gw.handle.accounts, radiologist());
    sign_up(
        &gw.handle.accounts,
        person("zhao", Role::Specialist, "Dr Zhao", Some("zhao"), None),
    );
    let patient = harness::samples::DemoPatient {
        id: "P-OHIF".into(),
        name: "TEST^OHIF".into(),
        sex: "M".into(),
        birth_date: "19600101".into(),
    };
    let ct = harness::samples::demo_ct_head(&dir.path().join("ct"), &patient, 12).unwrap();
    pilot.import(&ct.files).await.unwrap();
    let id = pilot
        .ask(&json!({
            "patient": {"id": "P-OHIF", "name": "", "sex": "", "birth_date": ""},
            "question": "bleed?", "specialty": "radiology", "urgency": "urgent",
            "consent": {"given_by": "patient", "method": "written"},
            "studies": [ct.study_uid], "submit": true,
        }))
        .unwrap();
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    let (archive, site) = (gw.handle.archive.clone(), gw.handle.consult.clone());
    let case = proto::consult::ConsultationId::parse(&id).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let arrived: u64 = archive.studies(&jinzhou).iter().map(|s| s.instances).sum();
            let delivered = site
                .log
                .get(&case)
                .unwrap()
                .is_some_and(|f| f.consultation.delivered_at_ms.is_some());
            arrived == 12 && delivered
        })
        .await,
        "the CT and the case reach the hospital"
    );

    let hospital = format!("http://{}", daemon::client::local(gw.web_addr));
    let study = ct.study_uid.clone();
    tokio::task::spawn_blocking(move || {
        let b = Browser::start().unwrap();
        log_in(&b, &hospital, "li").unwrap();
        b.goto(&format!("{hospital}/cases/{id}")).unwrap();
        let href = b
            .script("const a = document.querySelector('a.open-ohif'); return a ? a.getAttribute('href') : null")
            .unwrap();
        let href = href.as_str().expect("the case page links its study to OHIF").to_owned();
        assert!(href.contains(&study), "{href}");
        let opened = Instant::now();
        b.goto(&format!("{hospital}{href}")).unwrap();
        assert!(
            eventually(&b, IMAGE_DRAWN, Duration::from_secs(90)),
            "OHIF draws the first image; the page says: {}",
            b.text("body").unwrap_or_default()
        );
        println!(
            "OHIF drew the first image {:.1} s after the link was opened",
            opened.elapsed().as_secs_f64()
        );
        // The study browser lists the study (its description) and its one series (series
        // number 1, modality CT), and the viewport counts the series' 12 images.
        let listed = b.text("body").unwrap();
        for shown in ["CT HEAD", "S:1", "CT", "/12)"] {
            assert!(listed.contains(shown), "OHIF shows no {shown:?}: {listed}");
        }
        std::fs::create_dir_all(shots()).unwrap();
        b.screenshot(&shots().join("ohif-study.png")).unwrap();
        drop(b);

        // Dr Zhao, on no case of this study, opens the same link: nothing of it shows.
        let b = Browser::start().unwrap();
        log_in(&b, &hospital, "zhao").unwrap();
        b.goto(&format!("{hospital}{href}")).unwrap();
        assert!(
            !eventually(&b, IMAGE_DRAWN, Duration::from_secs(15)),
            "another specialist's OHIF draws the study"
        );
        let shown = b.text("body").unwrap_or_default();
        assert!(!shown.contains("TEST") && !shown.contains("P-OHIF"), "{shown}");
        b.screenshot(&shots().join("ohif-not-theirs.png")).unwrap();
    })
    .await
    .unwrap();
    pilot.stop().await.unwrap();
}
