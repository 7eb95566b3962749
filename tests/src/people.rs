//! The people and requests the tests make again and again: accounts with one known password,
//! a roster with one radiologist, a township doctor's request, and a raw HTTP exchange for
//! requests the daemons' client does not send (cookies, forms, binary bodies).

use std::io::{Read, Write};
use std::net::SocketAddr;

use daemon::accounts::{Role, User};
use proto::consult::{Consent, EventKind, Patient, Urgency};

/// The password of every account the tests make.
pub const PASSWORD: &str = "a long enough password";

/// `routing.toml` with one radiologist, `li` ("Li Wei"), on duty around the clock and taking
/// every case.
pub const ONE_RADIOLOGIST: &str = r#"
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
"#;

/// Dr Li, the attending radiologist `li` of the rosters the tests write.
pub fn radiologist() -> User {
    person(
        "li",
        Role::Specialist,
        "Dr Li",
        Some("li"),
        Some("attending radiologist"),
    )
}

/// The doctor `wang` sends consultation `id` about `patient_id` from the clinic's site: the
/// events of [`request`] appended there, as the doctor's form appends them.
pub fn send_request(
    site: &daemon::replicate::Site,
    clinic: &proto::ClinicId,
    id: &proto::consult::ConsultationId,
    patient_id: &str,
    specialty: &str,
    urgency: Urgency,
) {
    for kind in request(patient_id, specialty, urgency, daemon::now_ms()) {
        site.append(clinic, id, "wang", daemon::now_ms(), kind)
            .unwrap_or_else(|e| panic!("the clinic stores the request: {e}"));
    }
}

/// An account: a specialist when `specialist` names their roster id.
pub fn person(
    name: &str,
    role: Role,
    display_name: &str,
    specialist: Option<&str>,
    qualification: Option<&str>,
) -> User {
    User {
        name: name.into(),
        role,
        display_name: display_name.into(),
        specialist: specialist.map(str::to_owned),
        qualification: qualification.map(str::to_owned),
        deactivated: false,
    }
}

/// Adds `user` to `accounts` with [`PASSWORD`]; a script token of theirs.
pub fn sign_up(accounts: &daemon::accounts::Accounts, user: User) -> String {
    let name = user.name.clone();
    accounts
        .add(user, PASSWORD, false)
        .unwrap_or_else(|e| panic!("adding {name}: {e}"));
    accounts
        .script_token(&name)
        .unwrap_or_else(|e| panic!("a token for {name}: {e}"))
}

/// A request as a township doctor sends it: created, consent recorded, submitted.
pub fn request(patient_id: &str, specialty: &str, urgency: Urgency, now_ms: i64) -> [EventKind; 3] {
    [
        EventKind::Created {
            patient: Patient {
                id: patient_id.into(),
                name: "Test^Patient".into(),
                sex: String::new(),
                birth_date: String::new(),
            },
            clinical_summary: String::new(),
            question: "?".into(),
            specialty: specialty.into(),
            urgency,
            number: None,
        },
        EventKind::ConsentRecorded {
            consent: Consent {
                given_by: "patient".into(),
                method: "written".into(),
                at_ms: now_ms,
            },
        },
        EventKind::Submitted,
    ]
}

/// A request as the doctor's form sends it: patient fields left for the studies' DICOM headers
/// to fill, written consent, sent at once.
pub fn new_case(
    specialty: &str,
    urgency: Urgency,
    question: &str,
    clinical_summary: &str,
    studies: Vec<String>,
) -> clinic_agent::cases::NewConsultation {
    clinic_agent::cases::NewConsultation {
        patient: Patient {
            id: String::new(),
            name: String::new(),
            sex: String::new(),
            birth_date: String::new(),
        },
        clinical_summary: clinical_summary.into(),
        question: question.into(),
        specialty: specialty.into(),
        urgency,
        consent: Some(clinic_agent::cases::ConsentBody {
            given_by: "patient".into(),
            method: "written".into(),
        }),
        studies,
        submit: true,
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` over HTTP/1.0
/// (a `Content-Length` is added); returns the status and the whole answer, headers included.
pub fn raw_http(addr: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "{head}\r\nContent-Length: {}\r\n\r\n", body.len())?;
    s.write_all(body)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, out))
}

/// `config` with `roster` as its `routing.toml`, checked every second.
pub fn with_routing(
    config: &gateway::GatewayConfig,
    roster: &str,
) -> anyhow::Result<gateway::GatewayConfig> {
    std::fs::write(config.file.with_file_name("routing.toml"), roster)?;
    crate::append_config(
        &config.file,
        "[routing]\nfile = \"routing.toml\"\ncheck_secs = 1\n",
    )?;
    Ok(gateway::GatewayConfig::load(&config.file)?)
}

/// A specialist, through a node's API with their token, accepts the consultation `id` and
/// signs a one-line report on it; panics with the answer when either is refused.
pub fn accept_and_report(web: SocketAddr, token: &str, id: &str) {
    let case = format!("/api/v1/consultations/{id}");
    for (path, body) in [
        (format!("{case}/accept"), None),
        (
            format!("{case}/report"),
            Some(r#"{"impression":"no acute finding","confirm_incomplete":true}"#),
        ),
    ] {
        let (status, answer) = crate::http(web, "POST", &path, Some(token), body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(status, 200, "POST {path}: {answer}");
    }
}

/// A hospital and one clinic on this machine: a gateway routing every case to Dr Li
/// ([`ONE_RADIOLOGIST`]), its configuration changed by `tune` before it starts, and the
/// Jinzhou clinic's agent linked to it with the doctor `wang` signed up.
pub struct RadiologyPilot {
    pub gateway: crate::RunningGateway,
    pub agent: crate::RunningAgent,
    /// `wang`'s script token at the clinic.
    pub doctor: String,
}

impl RadiologyPilot {
    pub fn start(
        dir: &std::path::Path,
        tune: impl FnOnce(&mut gateway::GatewayConfig),
    ) -> anyhow::Result<Self> {
        let pilot = crate::PilotDir::create(dir, crate::Timings::default())?;
        let link = crate::free_udp_addr();
        let mut config = with_routing(&pilot.gateway_config(link)?, ONE_RADIOLOGIST)?;
        tune(&mut config);
        let gateway = crate::RunningGateway::start(config)?;
        let bundle = pilot.enrol("jinzhou", "Jinzhou")?;
        let agent = crate::RunningAgent::start(
            pilot.agent_config("jinzhou", &bundle, link)?,
            Default::default(),
        )?;
        let doctor = sign_up(
            &agent.handle.accounts,
            person("wang", Role::Doctor, "Dr Wang", None, None),
        );
        Ok(Self {
            gateway,
            agent,
            doctor,
        })
    }

    /// The doctor sends a consultation (the clinic API's JSON `request`); its id.
    pub fn ask(&self, request: &serde_json::Value) -> anyhow::Result<String> {
        let (status, answer) = crate::http(
            daemon::client::local(self.agent.web_addr),
            "POST",
            "/api/v1/consultations",
            Some(&self.doctor),
            Some(&request.to_string()),
        )?;
        anyhow::ensure!(status == 200, "the clinic refused the request: {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer)?;
        answer["consultation"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no consultation id in {answer}"))
    }

    /// Imports `files` at the clinic, as the modality or the import page would.
    pub async fn import(&self, files: &[std::path::PathBuf]) -> anyhow::Result<()> {
        let handle = self.agent.handle.clone();
        let files = files.to_vec();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for f in &files {
                handle.ingest_file(f)?;
            }
            Ok(())
        })
        .await?
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.agent.stop().await?;
        self.gateway.stop().await
    }
}
