//! DICOMweb on the gateway's web listener (DICOM PS3.18), under `/dicomweb/`: QIDO-RS
//! searches (`qido`), WADO-RS metadata, instances, frames, bulk data, `rendered` and
//! `thumbnail`, over the archive of every clinic, so OHIF, Weasis or a script reads the
//! studies of the consultations as any PACS' are read; and STOW-RS into a case's study (a key
//! image, a structured report, a screenshot from a reporting tool), kept in the archive of
//! the study's clinic and forwarded to the PACS like the clinic's own instances.
//!
//! Access is the consultations': the same accounts, sessions and bearer tokens as the API; a
//! specialist reads the studies of the cases the policy lets them list (`crate::access`), an
//! administrator every study; a study outside that is absent (404, or no match). Every read
//! that answers with patient data is recorded in the audit log first, naming the studies.
//!
//! Headers are read up to the pixel data and kept in a small cache keyed by object id: an
//! object's id is the hash of its bytes, so an entry can never be stale.

// An answer refused is a whole response; boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod qido;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use daemon::api::{blocking, ApiError};
use daemon::dicomweb::instance::{self, Header};
use daemon::dicomweb::media::{self, Syntax};
use daemon::dicomweb::{multipart, tag_key, DICOM_JSON};
use daemon::login::Authenticated;
use daemon::render::{Picture, RenderError};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use proto::sync::ObjectId;
use proto::ClinicId;
use serde_json::{json, Map, Value};

use self::qido::{Include, Level, Query};
use crate::api::Api;
use crate::archive::InstanceRecord;
use crate::cases::Studies;
use crate::https::Peer;

type Client = axum::extract::ConnectInfo<Peer>;

/// The routes, all read-only (written out whole: the route matrix test reads them here).
pub fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/dicomweb/studies", get(search_studies).post(store))
        .route("/dicomweb/series", get(search_series))
        .route("/dicomweb/instances", get(search_instances))
        .route(
            "/dicomweb/studies/{study}",
            get(retrieve).post(store_in_study),
        )
        .route("/dicomweb/studies/{study}/metadata", get(metadata))
        .route("/dicomweb/studies/{study}/thumbnail", get(thumbnail))
        .route("/dicomweb/studies/{study}/series", get(search_series))
        .route("/dicomweb/studies/{study}/instances", get(search_instances))
        .route("/dicomweb/studies/{study}/series/{series}", get(retrieve))
        .route(
            "/dicomweb/studies/{study}/series/{series}/metadata",
            get(metadata),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/thumbnail",
            get(thumbnail),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances",
            get(search_instances),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}",
            get(retrieve),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata",
            get(metadata),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered",
            get(rendered),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/thumbnail",
            get(thumbnail),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
            get(frames),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered",
            get(rendered_frame),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulk/{tag}",
            get(bulk),
        )
}

/// The study, series and instance a path names (the levels below it absent).
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct Target {
    study: Option<String>,
    series: Option<String>,
    sop: Option<String>,
}

impl Target {
    fn describe(&self) -> String {
        [&self.study, &self.series, &self.sop]
            .iter()
            .filter_map(|s| s.as_deref())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// One stored instance the user may read.
#[derive(Debug, Clone)]
struct Found {
    study: String,
    series: String,
    sop: String,
    record: InstanceRecord,
}

/// The studies `user` may read through DICOMweb, each with the clinic that sent it (computed
/// at most a few seconds ago: `cases::Scopes`).
fn scope(api: &Api, user: &daemon::accounts::User) -> Result<Studies, ApiError> {
    api.dicomweb_scopes
        .readable(&api.cases, user)
        .map_err(ApiError::from)
}

/// The instances of `target` (every readable study when it names none) the user may read,
/// in study, series, Instance Number order; the newest version of an instance sent twice.
fn found(
    api: &Api,
    user: &daemon::accounts::User,
    target: &Target,
    studies_asked: Option<&[String]>,
) -> Result<Vec<Found>, ApiError> {
    let wanted: Vec<(ClinicId, String)> = scope(api, user)?
        .iter()
        .filter(|(_, s)| target.study.as_ref().is_none_or(|t| t == s))
        .filter(|(_, s)| studies_asked.is_none_or(|list| list.contains(s)))
        .cloned()
        .collect();
    let mut latest: BTreeMap<(String, String, String), Found> = BTreeMap::new();
    for (_, [_, study, series, sop], record) in api
        .cases
        .archive
        .instances_of(&wanted)
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        if target.series.as_ref().is_some_and(|t| *t != series)
            || target.sop.as_ref().is_some_and(|t| *t != sop)
        {
            continue;
        }
        let key = (study.clone(), series.clone(), sop.clone());
        let newer = latest
            .get(&key)
            .is_none_or(|f| f.record.received_at <= record.received_at);
        if newer {
            latest.insert(
                key,
                Found {
                    study,
                    series,
                    sop,
                    record,
                },
            );
        }
    }
    let mut out: Vec<Found> = latest.into_values().collect();
    out.sort_by(|a, b| {
        (
            &a.study,
            &a.series,
            a.record.instance_number.unwrap_or(i64::MAX),
            &a.sop,
        )
            .cmp(&(
                &b.study,
                &b.series,
                b.record.instance_number.unwrap_or(i64::MAX),
                &b.sop,
            ))
    });
    Ok(out)
}

/// Parsed headers by object id, a few thousand at most.
fn headers() -> &'static Mutex<HashMap<ObjectId, Arc<Header>>> {
    static CACHE: OnceLock<Mutex<HashMap<ObjectId, Arc<Header>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

const CACHED_HEADERS: usize = 4096;

/// The header of a stored object (blocking).
fn header_of(api: &Api, object: &ObjectId) -> Result<Arc<Header>, ApiError> {
    if let Some(h) = headers()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(object)
    {
        return Ok(h.clone());
    }
    let file = local_file(api, object)?;
    let h = Arc::new(instance::header(file.path()).map_err(render_failed)?);
    let mut cache = headers().lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= CACHED_HEADERS {
        cache.clear();
    }
    cache.insert(object.clone(), h.clone());
    Ok(h)
}

fn render_failed(e: RenderError) -> ApiError {
    match e {
        RenderError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()),
        RenderError::NoFrame { .. } => ApiError::not_found(e.to_string()),
        _ => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot_decode",
            e.to_string(),
        ),
    }
}

fn not_acceptable(e: media::NotAcceptable) -> ApiError {
    ApiError::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", e.0)
}

/// Where this listener's DICOMweb service is, as the request named the host.
fn service_url(api: &Api, headers: &HeaderMap) -> String {
    format!("{}/dicomweb", api.origin(headers))
}

fn instance_url(base: &str, f: &Found) -> String {
    format!(
        "{base}/studies/{}/series/{}/instances/{}",
        f.study, f.series, f.sop
    )
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

/// A DICOM JSON answer, gzipped when the client takes it and it is worth it.
fn json_answer(headers: &HeaderMap, value: &Value) -> Response {
    let body = value.to_string().into_bytes();
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut response = if gzip && body.len() > 1024 {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zipped = encoder.write_all(&body).and_then(|()| encoder.finish());
        match zipped {
            Ok(zipped) => {
                let mut r = Body::from(zipped).into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            Err(_) => Body::from(body).into_response(),
        }
    } else {
        Body::from(body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(DICOM_JSON));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

fn wants_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if media::accepts_json(accept(headers)) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "searches and metadata are answered as application/dicom+json; accept it",
        ))
    }
}

/// Records a read of `studies` by `user` before it is answered (the record is fsynced: on a
/// blocking thread).
async fn audit(
    api: &Api,
    user: &daemon::accounts::User,
    from: std::net::SocketAddr,
    action: &'static str,
    studies: impl IntoIterator<Item = String>,
) -> Result<(), ApiError> {
    let set: BTreeSet<String> = studies.into_iter().collect();
    if set.is_empty() {
        return Ok(());
    }
    let target = set.into_iter().collect::<Vec<_>>().join(",");
    let (api, user) = (api.clone(), user.clone());
    blocking(move || {
        api.cases
            .audited_target(&user, from, action, &target)
            .map_err(ApiError::from)
    })
    .await
}

/// A QIDO-RS query string parsed (a malformed one or an unknown key is a 400 that names it).
pub fn query_pairs(raw: Option<&str>) -> Result<Query, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("the query string is malformed: {e}")))?;
    Query::parse(&pairs).map_err(|e| ApiError::bad_request(e.0))
}

async fn search_studies(
    state: State<Api>,
    from: Client,
    user: Authenticated,
    raw: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    search(
        state,
        from,
        user,
        Target::default(),
        raw,
        headers,
        Level::Study,
    )
    .await
}

async fn search_series(
    state: State<Api>,
    from: Client,
    user: Authenticated,
    target: Option<Path<Target>>,
    raw: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = target.map(|p| p.0).unwrap_or_default();
    search(state, from, user, target, raw, headers, Level::Series).await
}

async fn search_instances(
    state: State<Api>,
    from: Client,
    user: Authenticated,
    target: Option<Path<Target>>,
    raw: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = target.map(|p| p.0).unwrap_or_default();
    search(state, from, user, target, raw, headers, Level::Instance).await
}

/// The most entries one answer holds when the search names no `limit`.
const MAX_MATCHES: usize = 1000;

/// One entry of a search: its instances, first the one whose header speaks for it.
struct Entry<'a> {
    instances: Vec<&'a Found>,
}

async fn search(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    target: Target,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    level: Level,
) -> Result<Response, ApiError> {
    wants_json(&headers)?;
    let query = query_pairs(raw.as_deref())?;
    let base = service_url(&api, &headers);
    let (a, u) = (api.clone(), user.clone());
    let (answers, more) = blocking(move || {
        let (api, user) = (a, u);
        // A study UID asked narrows the archive read before any header is.
        let studies_asked: Option<Vec<String>> = query.key(tags::STUDY_INSTANCE_UID).map(|v| {
            v.split([',', '\\'])
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        });
        let all = found(&api, &user, &target, studies_asked.as_deref())?;
        let mut entries: BTreeMap<(String, String, String), Entry<'_>> = BTreeMap::new();
        for f in &all {
            let key = match level {
                Level::Study => (f.study.clone(), String::new(), String::new()),
                Level::Series => (f.study.clone(), f.series.clone(), String::new()),
                Level::Instance => (f.study.clone(), f.series.clone(), f.sop.clone()),
            };
            entries
                .entry(key)
                .or_insert_with(|| Entry {
                    instances: Vec::new(),
                })
                .instances
                .push(f);
        }
        // Counts and modalities come from the index, not the files.
        let mut study_facts: HashMap<&str, (BTreeSet<&str>, usize, Vec<String>)> = HashMap::new();
        for f in &all {
            let facts = study_facts.entry(&f.study).or_default();
            facts.0.insert(&f.series);
            facts.1 += 1;
            if let Some(m) = f.record.modality.as_ref().filter(|m| !m.is_empty()) {
                if !facts.2.contains(m) {
                    facts.2.push(m.clone());
                }
            }
        }
        let mut answers = Vec::new();
        let mut matched = 0usize;
        let limit = query.limit.unwrap_or(MAX_MATCHES).min(MAX_MATCHES);
        let mut more = false;
        for entry in entries.values() {
            let first = entry.instances[0];
            // An instance the server cannot read is left out, not the whole answer.
            let header = match header_of(&api, &first.record.object) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(object = %first.record.object, error = %e.message, "a stored instance cannot be read for a search");
                    continue;
                }
            };
            let (series, instances, modalities) = &study_facts[first.study.as_str()];
            let mut computed: Vec<(Tag, Value)> = vec![
                (
                    tags::RETRIEVE_URL,
                    json!({ "vr": "UR", "Value": [match level {
                        Level::Study => format!("{base}/studies/{}", first.study),
                        Level::Series => format!("{base}/studies/{}/series/{}", first.study, first.series),
                        Level::Instance => instance_url(&base, first),
                    }] }),
                ),
                (
                    tags::INSTANCE_AVAILABILITY,
                    json!({ "vr": "CS", "Value": ["ONLINE"] }),
                ),
            ];
            match level {
                Level::Study => computed.extend([
                    (tags::MODALITIES_IN_STUDY, json!({ "vr": "CS", "Value": modalities })),
                    (tags::NUMBER_OF_STUDY_RELATED_SERIES, json!({ "vr": "IS", "Value": [series.len()] })),
                    (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, json!({ "vr": "IS", "Value": [instances] })),
                ]),
                Level::Series => computed.push((
                    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
                    json!({ "vr": "IS", "Value": [entry.instances.len()] }),
                )),
                Level::Instance => {}
            }
            let value_of = |tag: Tag| -> Vec<String> {
                if tag == tags::MODALITIES_IN_STUDY {
                    return modalities.clone();
                }
                match header.text(tag) {
                    Some(v) if qido::vr_of(tag) == dicom_core::VR::PN => vec![v],
                    Some(v) => v.split('\\').map(|s| s.trim().to_owned()).collect(),
                    None => Vec::new(),
                }
            };
            let hit = query.keys.iter().all(|(tag, asked)| {
                qido::matches(qido::vr_of(*tag), asked, &value_of(*tag), query.fuzzy)
            });
            if !hit {
                continue;
            }
            matched += 1;
            if matched <= query.offset {
                continue;
            }
            if answers.len() == limit {
                more = true;
                break;
            }
            // An entry whose data set cannot be written as DICOM JSON is left out, as an
            // unreadable one is.
            match answer(level, &query, &header, computed) {
                Ok(a) => answers.push((first.study.clone(), a)),
                Err(e) => {
                    tracing::warn!(object = %first.record.object, error = %e.message, "a stored instance cannot be answered in a search");
                }
            }
        }
        Ok((answers, more))
    })
    .await?;
    audit(
        &api,
        &user,
        from,
        "dicomweb_search",
        answers.iter().map(|(s, _)| s.clone()),
    )
    .await?;
    let mut response = blocking(move || {
        Ok(json_answer(
            &headers,
            &Value::Array(answers.into_iter().map(|(_, a)| Value::Object(a)).collect()),
        ))
    })
    .await?;
    if more {
        response.headers_mut().insert(
            header::WARNING,
            HeaderValue::from_static(
                "299 tpg: \"There are additional results that can be requested\"",
            ),
        );
    }
    Ok(response)
}

/// A search entry's attributes: its level's, the matching keys', the included fields' (or all
/// of its header's with `includefield=all`), from the header of its first instance or as
/// computed; one the file lacks is present and empty.
fn answer(
    level: Level,
    query: &Query,
    header: &Header,
    computed: Vec<(Tag, Value)>,
) -> Result<Map<String, Value>, ApiError> {
    let mut wanted: BTreeSet<Tag> = qido::answered(level).into_iter().collect();
    wanted.extend(query.keys.iter().map(|(t, _)| *t));
    let all = match &query.include {
        Include::All => true,
        Include::Tags(list) => {
            wanted.extend(list.iter().copied());
            false
        }
    };
    let mut picked = dicom_object::InMemDicomObject::new_empty();
    for element in header.dataset.iter() {
        let tag = element.header().tag;
        if all || wanted.contains(&tag) {
            picked.put(element.clone());
        }
    }
    let mut out = instance::dataset_json(&picked, None).map_err(render_failed)?;
    for (tag, value) in computed {
        if wanted.contains(&tag) || all {
            out.insert(tag_key(tag), value);
        }
    }
    if out.contains_key(&tag_key(tags::SPECIFIC_CHARACTER_SET)) {
        // The answer is UTF-8 whatever the file's character set was.
        out.insert(
            tag_key(tags::SPECIFIC_CHARACTER_SET),
            json!({ "vr": "CS", "Value": ["ISO_IR 192"] }),
        );
    }
    for tag in wanted {
        out.entry(tag_key(tag))
            .or_insert_with(|| json!({ "vr": qido::vr_of(tag).to_string() }));
    }
    Ok(out)
}

/// The instances a retrieve names: 404 when there are none the user may read.
fn named(
    api: &Api,
    user: &daemon::accounts::User,
    target: &Target,
) -> Result<Vec<Found>, ApiError> {
    let all = found(api, user, target, None)?;
    if all.is_empty() {
        return Err(ApiError::not_found(format!(
            "no {} {} here",
            match (&target.series, &target.sop) {
                (_, Some(_)) => "instance",
                (Some(_), None) => "series",
                _ => "study",
            },
            target.describe()
        )));
    }
    Ok(all)
}

async fn metadata(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path(target): Path<Target>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    wants_json(&headers)?;
    let base = service_url(&api, &headers);
    let (a, u) = (api.clone(), user.clone());
    let all = blocking(move || named(&a, &u, &target)).await?;
    audit(
        &api,
        &user,
        from,
        "dicomweb_metadata",
        all.iter().map(|f| f.study.clone()),
    )
    .await?;
    blocking(move || {
        // An instance the server cannot read is left out and counted in a warning, not made
        // the whole answer's failure.
        let mut items = Vec::new();
        let mut unreadable = 0;
        for f in &all {
            match header_of(&api, &f.record.object)
                .and_then(|h| h.metadata(&instance_url(&base, f)).map_err(render_failed))
            {
                Ok(item) => items.push(Value::Object(item)),
                Err(e) => {
                    tracing::warn!(object = %f.record.object, error = %e.message, "a stored instance cannot be read for its metadata");
                    unreadable += 1;
                }
            }
        }
        let mut response = json_answer(&headers, &Value::Array(items));
        if unreadable > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "299 tpg: \"{unreadable} instance(s) could not be read and are left out\""
            )) {
                response.headers_mut().insert(header::WARNING, v);
            }
        }
        Ok(response)
    })
    .await
}

/// A stored object's file on this node (blocking).
fn local_file(api: &Api, object: &ObjectId) -> Result<store::objects::LocalFile, ApiError> {
    api.cases
        .archive
        .objects()
        .local_file(object)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// WADO-RS of a study, series or instance: `multipart/related; type="application/dicom"`,
/// one instance after another as they are read, as stored or in Explicit VR Little Endian.
async fn retrieve(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path(target): Path<Target>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let asked = accept(&headers).map(str::to_owned);
    let base = service_url(&api, &headers);
    let (a, u) = (api.clone(), user.clone());
    // Each instance's syntax is settled before the answer starts: a refusal is a status.
    // An instance whose header cannot be read is left out, as in the metadata; only when
    // none can be is the retrieve refused.
    let planned = blocking(move || {
        let mut planned = Vec::new();
        let mut unreadable = None;
        for f in named(&a, &u, &target)? {
            let header = match header_of(&a, &f.record.object) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(object = %f.record.object, error = %e.message, "a stored instance cannot be read for a retrieve");
                    unreadable = Some(e);
                    continue;
                }
            };
            let syntax = media::instances(asked.as_deref(), &header.transfer_syntax)
                .map_err(not_acceptable)?;
            planned.push((f, header.transfer_syntax.clone(), syntax));
        }
        match unreadable {
            Some(e) if planned.is_empty() => Err(e),
            _ => Ok(planned),
        }
    })
    .await?;
    audit(
        &api,
        &user,
        from,
        "dicomweb_retrieve",
        planned.iter().map(|(f, ..)| f.study.clone()),
    )
    .await?;
    let boundary = multipart::new_boundary();
    let content_type = multipart::content_type(&boundary, "application/dicom");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    tokio::task::spawn_blocking(move || {
        // Each instance goes out as its part's head, then its bytes a chunk at a time (as
        // stored: read from the file; converted: built whole first), then the part's end.
        let send = |item: Result<bytes::Bytes, String>| match item {
            Ok(b) => tx.blocking_send(Ok(b)).is_ok(),
            Err(e) => {
                // The status is sent; a body cut short is how the client learns of it.
                tracing::warn!(error = %e, "an instance could not be sent");
                let _ = tx.blocking_send(Err(std::io::Error::other(e)));
                false
            }
        };
        for (f, stored, syntax) in planned {
            let ts = match syntax {
                Syntax::AsStored => stored,
                Syntax::ExplicitLe => media::EXPLICIT_LE.to_owned(),
            };
            let file = match local_file(&api, &f.record.object) {
                Ok(file) => file,
                Err(e) => {
                    send(Err(e.message));
                    return;
                }
            };
            let head = multipart::part_head(
                &boundary,
                &format!("application/dicom; transfer-syntax={ts}"),
                Some(&instance_url(&base, &f)),
            );
            if !send(Ok(head.into())) {
                return;
            }
            let sent = match syntax {
                Syntax::AsStored => send_file(file.path(), &send),
                Syntax::ExplicitLe => match instance::explicit_le_file(file.path()) {
                    Ok(bytes) => send(Ok(bytes.into())),
                    Err(e) => send(Err(e.to_string())),
                },
            };
            if !sent || !send(Ok(bytes::Bytes::from_static(multipart::PART_END))) {
                return;
            }
        }
        let _ = tx.blocking_send(Ok(multipart::closing(&boundary).into()));
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Sends the file at `path` through `send` a MiB at a time; false when it stopped.
fn send_file(path: &std::path::Path, send: &dyn Fn(Result<bytes::Bytes, String>) -> bool) -> bool {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return send(Err(e.to_string())),
    };
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        match file.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                chunk.truncate(n);
                if !send(Ok(chunk.into())) {
                    return false;
                }
            }
            Err(e) => return send(Err(e.to_string())),
        }
    }
}

/// One instance the path names, with its file on this node.
fn the_instance(
    api: &Api,
    user: &daemon::accounts::User,
    target: &Target,
) -> Result<(Found, Arc<Header>), ApiError> {
    let f = named(api, user, target)?.remove(0);
    let header = header_of(api, &f.record.object)?;
    Ok((f, header))
}

/// The most frames one request names (or one instance's bulk pixel data holds).
const MAX_FRAME_LIST: u32 = 10_000;

#[derive(Debug, serde::Deserialize)]
struct FramePath {
    study: String,
    series: String,
    sop: String,
    frames: String,
}

impl FramePath {
    fn target(&self) -> Target {
        Target {
            study: Some(self.study.clone()),
            series: Some(self.series.clone()),
            sop: Some(self.sop.clone()),
        }
    }

    /// The frame numbers of the path (`1,3,5`), from 1.
    fn numbers(&self) -> Result<Vec<u32>, ApiError> {
        self.frames
            .split(',')
            .map(|n| n.trim().parse::<u32>().ok().filter(|n| *n > 0))
            .collect::<Option<Vec<u32>>>()
            .filter(|list| !list.is_empty() && list.len() <= MAX_FRAME_LIST as usize)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "frames/{} is not a list of frame numbers from 1 (frames/1,2,3)",
                    self.frames
                ))
            })
    }
}

/// The instance's Number of Frames (0028,0008), at least 1.
fn frame_count(header: &instance::Header) -> u32 {
    header
        .text(tags::NUMBER_OF_FRAMES)
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

/// WADO-RS frames: `multipart/related`, one part per frame, as stored or decoded.
async fn frames(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path(path): Path<FramePath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let numbers = path.numbers()?;
    let asked = accept(&headers).map(str::to_owned);
    let (a, u) = (api.clone(), user.clone());
    let target = path.target();
    let (f, header) = blocking(move || the_instance(&a, &u, &target)).await?;
    let (syntax, part_type) =
        media::frames(asked.as_deref(), &header.transfer_syntax).map_err(not_acceptable)?;
    // Checked before anything is decoded (or recorded as read): each frame must exist, and a
    // list cannot ask for more frames than the instance has.
    let count = frame_count(&header);
    if let Some(n) = numbers.iter().find(|n| **n > count) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_frame",
            format!("the instance has {count} frame(s), not frame {n}"),
        ));
    }
    if numbers.len() > count as usize {
        return Err(ApiError::bad_request(format!(
            "the list names {} frames of an instance of {count}; ask for each frame once",
            numbers.len()
        )));
    }
    audit(&api, &user, from, "dicomweb_frames", [f.study.clone()]).await?;
    blocking(move || {
        let file = local_file(&api, &f.record.object)?;
        let parts = instance::frames(file.path(), &numbers, &syntax).map_err(render_failed)?;
        Ok(parts_answer(&part_type, parts))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
struct BulkPath {
    study: String,
    series: String,
    sop: String,
    tag: String,
}

/// WADO-RS bulk data: a top-level value the metadata named by URI. The pixel data is sent as
/// its frames, one part each.
async fn bulk(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path(path): Path<BulkPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tag = daemon::dicomweb::parse_tag_key(&path.tag).ok_or_else(|| {
        ApiError::bad_request(format!(
            "bulk/{} does not name a tag; bulk data is named by eight hex digits (bulk/7FE00010)",
            path.tag
        ))
    })?;
    let asked = accept(&headers).map(str::to_owned);
    let (a, u) = (api.clone(), user.clone());
    let target = Target {
        study: Some(path.study),
        series: Some(path.series),
        sop: Some(path.sop),
    };
    let (f, header) = blocking(move || the_instance(&a, &u, &target)).await?;
    let (syntax, part_type) = if tag == tags::PIXEL_DATA {
        media::frames(asked.as_deref(), &header.transfer_syntax).map_err(not_acceptable)?
    } else {
        (Syntax::AsStored, "application/octet-stream".to_owned())
    };
    let present = if tag == tags::PIXEL_DATA {
        header.pixel_data.is_some()
    } else {
        header.bulk.iter().any(|(t, _)| *t == tag) || header.dataset.element(tag).is_ok()
    };
    if !present {
        return Err(ApiError::not_found(format!(
            "the instance has no {}; its metadata names its bulk data",
            path.tag
        )));
    }
    let frames = frame_count(&header);
    if tag == tags::PIXEL_DATA && frames > MAX_FRAME_LIST {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_frames",
            format!(
                "the instance says it has {frames} frames; retrieve them by number (frames/1,2,3)"
            ),
        ));
    }
    audit(&api, &user, from, "dicomweb_bulk", [f.study.clone()]).await?;
    blocking(move || {
        let file = local_file(&api, &f.record.object)?;
        let parts = if tag == tags::PIXEL_DATA {
            let numbers: Vec<u32> = (1..=frames).collect();
            instance::frames(file.path(), &numbers, &syntax).map_err(render_failed)?
        } else {
            vec![instance::bulk(file.path(), tag).map_err(render_failed)?]
        };
        Ok(parts_answer(&part_type, parts))
    })
    .await
}

/// A `multipart/related` answer of `parts`, each of `part_type` (blocking: it copies them).
fn parts_answer(part_type: &str, parts: Vec<Vec<u8>>) -> Response {
    let boundary = multipart::new_boundary();
    let parts: Vec<(String, Vec<u8>)> = parts
        .into_iter()
        .map(|p| (part_type.to_owned(), p))
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            multipart::content_type(&boundary, part_type),
        )],
        multipart::body(&boundary, &parts),
    )
        .into_response()
}

/// The query of `rendered` and `thumbnail` (PS3.18 §8.3.5): the window, and the viewport a
/// picture is shrunk to fit.
#[derive(Debug, Default, serde::Deserialize)]
struct RenderQuery {
    /// `center,width[,function]`.
    window: Option<String>,
    /// `width,height`.
    viewport: Option<String>,
}

impl RenderQuery {
    fn window(&self) -> Option<(f64, f64)> {
        let w = self.window.as_deref()?;
        let mut it = w.split(',').map(|v| v.trim().parse::<f64>());
        match (it.next(), it.next()) {
            (Some(Ok(c)), Some(Ok(w))) => Some((c, w)),
            _ => None,
        }
    }

    fn fit(&self, default: Option<u32>) -> Option<u32> {
        self.viewport
            .as_deref()
            .and_then(|v| {
                v.split(',')
                    .filter_map(|n| n.trim().parse::<u32>().ok())
                    .max()
            })
            .map(|n| n.clamp(16, 4096))
            .or(default)
    }
}

/// The picture format a `rendered` or `thumbnail` request takes: JPEG unless it prefers PNG.
fn picture(headers: &HeaderMap) -> Result<Picture, ApiError> {
    for range in media::accepted(accept(headers)) {
        match range.essence.as_str() {
            "image/png" => return Ok(Picture::Png),
            "image/jpeg" | "image/*" | "*/*" => return Ok(Picture::Jpeg),
            _ => {}
        }
    }
    Err(ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "not_acceptable",
        "rendered images are sent as image/jpeg or image/png; accept one of them",
    ))
}

/// The side a thumbnail fits in when the request names no viewport.
const THUMBNAIL: u32 = 128;

#[allow(clippy::too_many_arguments)]
async fn render(
    api: Api,
    from: std::net::SocketAddr,
    user: daemon::accounts::User,
    target: Target,
    frame: Option<u32>,
    query: RenderQuery,
    headers: HeaderMap,
    thumbnail: bool,
) -> Result<Response, ApiError> {
    let (a, u) = (api.clone(), user.clone());
    // A study's or series' thumbnail is its middle instance's.
    let f = blocking(move || {
        let mut all = named(&a, &u, &target)?;
        let middle = all.len() / 2;
        Ok(all.swap_remove(middle))
    })
    .await?;
    let picture = picture(&headers)?;
    audit(
        &api,
        &user,
        from,
        if thumbnail {
            "dicomweb_thumbnail"
        } else {
            "dicomweb_rendered"
        },
        [f.study.clone()],
    )
    .await?;
    let fit = query.fit(thumbnail.then_some(THUMBNAIL));
    let window = query.window();
    let bytes = blocking(move || {
        let file = local_file(&api, &f.record.object)?;
        daemon::render::rendered(
            file.path(),
            frame.unwrap_or(1).saturating_sub(1),
            window,
            fit,
            picture,
        )
        .map_err(render_failed)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, picture.media_type())], bytes).into_response())
}

async fn rendered(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path(target): Path<Target>,
    axum::extract::Query(query): axum::extract::Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    render(api, from, user, target, None, query, headers, false).await
}

async fn rendered_frame(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path(path): Path<FramePath>,
    axum::extract::Query(query): axum::extract::Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let frame = match path.numbers()?.as_slice() {
        [one] => *one,
        _ => {
            return Err(ApiError::bad_request(
                "a rendered frame is one frame: frames/{n}/rendered",
            ))
        }
    };
    render(
        api,
        from,
        user,
        path.target(),
        Some(frame),
        query,
        headers,
        false,
    )
    .await
}

async fn thumbnail(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path(target): Path<Target>,
    axum::extract::Query(query): axum::extract::Query<RenderQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    render(api, from, user, target, None, query, headers, true).await
}

/// STOW-RS at the hospital: a specialist adds instances (a key image, a structured report)
/// to the studies of the cases they hold, once accepted. Each must belong to such a study (and
/// to the study the path names, if any), be of the study's patient, and be new: an instance
/// the study already holds is never replaced this way. It is kept in the archive of the
/// study's clinic and forwarded to the PACS like the clinic's own. The others are refused
/// and named.
async fn store(
    state: State<Api>,
    from: Client,
    user: Authenticated,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    stow(state, from, user, None, headers, body).await
}

async fn store_in_study(
    state: State<Api>,
    from: Client,
    user: Authenticated,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    stow(state, from, user, Some(study), headers, body).await
}

/// Held while a STOW-RS part is checked and stored at the hospital (a rare request: a key
/// image, a report), so that the same instance sent twice at once is stored once.
static STOW_CHECKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

async fn stow(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    study: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    use daemon::dicomweb::stow::{self, reason, Outcome};
    let base = service_url(&api, &headers);
    let study_url = study.as_ref().map(|s| format!("{base}/studies/{s}"));
    let (a, u) = (api.clone(), user.clone());
    // Study → every (clinic, the case's patient id) it is held in; and the SOP Instance UIDs
    // of every study the user may read, which a new instance must not reuse (a PACS would
    // take it for a new version of that instance, another patient's perhaps).
    let (storable, known): (Vec<(ClinicId, String, String)>, HashSet<String>) =
        blocking(move || {
            let storable = a.cases.storable_studies(&u).map_err(ApiError::from)?;
            // Holding no case's study, every part is refused before its UID is looked at.
            if storable.is_empty() {
                return Ok((storable, HashSet::new()));
            }
            let known = a
                .cases
                .archive
                .instances_of(&scope(&a, &u)?)
                .map_err(|e| ApiError::internal(e.to_string()))?
                .into_iter()
                .map(|(_, [.., sop], _)| sop)
                .collect();
            Ok((storable, known))
        })
        .await?;
    let mut held: HashMap<String, Vec<(ClinicId, String)>> = HashMap::new();
    for (clinic, study, patient) in storable {
        held.entry(study).or_default().push((clinic, patient));
    }
    let a = api.clone();
    let stage = move || {
        // The reserve is checked before a part is written, and again with its size.
        a.cases.archive.check_room(0).map_err(|e| e.to_string())?;
        a.cases.archive.objects().stage().map_err(|e| e.to_string())
    };
    let (a, u) = (api.clone(), user.clone());
    let named_study = study.clone();
    let keep = move |part: usize, staged: store::blob::TempBlob, head: Vec<u8>| {
        let (meta_class, meta_instance) = stow::meta_uids(&head);
        let refuse = |code: u16, why: String| Outcome {
            part,
            sop_class: meta_class.clone(),
            sop_instance: meta_instance.clone(),
            result: Err((code, why)),
        };
        let summary = match store::dicom::summarize(staged.path()) {
            Ok(s) => s,
            Err(e) => return refuse(reason::CANNOT_UNDERSTAND, e.to_string()),
        };
        let refuse = |code: u16, why: &str| Outcome {
            part,
            sop_class: Some(summary.sop_class_uid.clone()),
            sop_instance: Some(summary.sop_instance_uid.clone()),
            result: Err((code, why.to_owned())),
        };
        if named_study
            .as_ref()
            .is_some_and(|s| *s != summary.study_instance_uid)
        {
            return refuse(
                reason::PROCESSING_FAILURE,
                "the instance belongs to another study than the one the request names",
            );
        }
        let (clinic, case_patient) =
            match held.get(&summary.study_instance_uid).map(Vec::as_slice) {
                Some([one]) => one,
                Some(_) => return refuse(
                    reason::PROCESSING_FAILURE,
                    "the instance's study is held in cases of two clinics; the study cannot be \
                     told apart here, so add to it at the clinic that sent it",
                ),
                None => {
                    return refuse(
                        reason::PROCESSING_FAILURE,
                        "the instance's study is not one of the cases you hold; accept the case, \
                     then store into its study",
                    )
                }
            };
        // The checks and the store are one step: two requests with the same instance cannot
        // both pass the check.
        let _one_at_a_time = STOW_CHECKS.lock().unwrap_or_else(|p| p.into_inner());
        if known.contains(&summary.sop_instance_uid)
            || !a
                .cases
                .archive
                .versions(clinic, &summary.sop_instance_uid)
                .is_empty()
        {
            return refuse(
                reason::PROCESSING_FAILURE,
                "the archive already holds this SOP Instance UID; a new or changed instance \
                 needs a UID of its own",
            );
        }
        let existing = match a
            .cases
            .archive
            .study_instances(clinic, std::slice::from_ref(&summary.study_instance_uid))
        {
            Ok(e) => e,
            Err(e) => return refuse(reason::PROCESSING_FAILURE, &e.to_string()),
        };
        let patient = existing
            .first()
            .map_or(case_patient.as_str(), |([patient, ..], _)| patient.as_str());
        if summary.patient_id != patient {
            return refuse(
                reason::PROCESSING_FAILURE,
                "the instance names another patient id than its study; give it the study's \
                 patient",
            );
        }
        if let Err(e) =
            a.cases
                .audited_target(&u, from, "dicomweb_store", &summary.study_instance_uid)
        {
            return refuse(reason::PROCESSING_FAILURE, &e.to_string());
        }
        let result = match a.cases.archive.store_staged(clinic, staged) {
            Ok(_) => Ok(Some(format!(
                "{base}/studies/{}/series/{}/instances/{}",
                summary.study_instance_uid, summary.series_instance_uid, summary.sop_instance_uid
            ))),
            Err(e @ crate::archive::ArchiveError::Reserve { .. }) => {
                Err((reason::OUT_OF_RESOURCES, e.to_string()))
            }
            Err(e) => Err((reason::PROCESSING_FAILURE, e.to_string())),
        };
        Outcome {
            part,
            sop_class: Some(summary.sop_class_uid.clone()),
            sop_instance: Some(summary.sop_instance_uid.clone()),
            result,
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    stow::serve(content_type, body, stage, keep, study_url.as_deref()).await
}
