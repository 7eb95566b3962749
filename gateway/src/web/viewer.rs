//! The image viewer: a case's series, one at a time in one viewport, each frame rendered on the
//! server (window and level, frame number) from the object the page names, checked against the
//! case's studies; ECG waveforms drawn on the server as SVG on ECG paper. `viewer.js` scrolls a
//! series' slices and frames without reloading the page; without it the first frame shows.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use daemon::api::{blocking, ApiError};
use daemon::render::Described;
use daemon::waveform::{self, Paper};
use daemon::web::{Lang, Session};
use maud::{html, Markup};
use serde::Deserialize;

use super::cases::{parse_id, previews};
use super::{failed, page, Client};
use crate::api::Api;

/// The viewer page, its frames and waveforms, and its script.
pub(super) fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/cases/{id}/viewer", get(viewer))
        .route("/cases/{id}/images/{n}", get(image))
        .route("/cases/{id}/waveforms/{n}", get(waveform_svg))
        .route("/assets/viewer.js", get(script))
}

/// The most slices (instances × frames) one viewport scrolls through.
const MAX_STACK: usize = 10_000;

/// One instance of a case, as the viewer lists it.
struct Shown {
    study: String,
    series: String,
    modality: Option<String>,
    waveform: bool,
    object: proto::sync::ObjectId,
}

/// The instances of a case's studies that have arrived, by study, series and instance.
fn instances_of(api: &Api, c: &proto::consult::Consultation) -> Result<Vec<Shown>, ApiError> {
    let mut all = api
        .cases
        .archive
        .study_instances(&c.clinic, &c.studies)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // Images before waveforms, then the consultation's order of studies, each series in
    // Instance Number order.
    let study_rank = |study: &str| c.studies.iter().position(|s| s == study);
    all.sort_by_key(|([_, study, series, sop], rec)| {
        (
            waveform::is_waveform(&rec.sop_class_uid),
            study_rank(study),
            series.clone(),
            rec.instance_number.unwrap_or(i64::MAX),
            sop.clone(),
        )
    });
    Ok(all
        .into_iter()
        .map(|([_, study, series, _], rec)| Shown {
            study,
            series,
            modality: rec.modality,
            waveform: waveform::is_waveform(&rec.sop_class_uid),
            object: rec.object,
        })
        .collect())
}

/// One series of a case as the list shows it: its instances' places in the viewer's order.
struct Series {
    modality: String,
    waveform: bool,
    /// Indices into the case's instances, in order.
    instances: Vec<usize>,
    /// Its first instance's description (number, description), when it could be read.
    about: Described,
}

/// The series of `shown` (instances of one series are next to each other), in order.
fn series_of(shown: &[Shown]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for (n, s) in shown.iter().enumerate() {
        let same = n > 0 && shown[n - 1].study == s.study && shown[n - 1].series == s.series;
        match out.last_mut() {
            Some(last) if same => last.instances.push(n),
            _ => out.push(Series {
                modality: s.modality.clone().unwrap_or_else(|| "?".into()),
                waveform: s.waveform,
                instances: vec![n],
                about: Described::default(),
            }),
        }
    }
    out
}

/// One slice of the viewport: an instance's frame, and where it lies.
#[derive(serde::Serialize)]
struct Slice {
    /// The instance's place in the case's order, as the frame routes take it.
    n: usize,
    o: String,
    /// Frames of the instance: each is a slice of its own.
    f: u32,
    /// Position along the patient axis, mm.
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<f64>,
}

/// Window presets (center, width) for a modality: the usual CT windows; none for the others,
/// whose values are not Hounsfield units.
fn presets(modality: &str) -> Vec<(&'static str, Option<(i32, i32)>)> {
    let mut out = vec![("viewer.preset_default", None)];
    if modality == "CT" {
        out.extend([
            ("viewer.preset_lung", Some((-600, 1500))),
            ("viewer.preset_soft", Some((40, 400))),
            ("viewer.preset_bone", Some((400, 1800))),
            ("viewer.preset_brain", Some((40, 80))),
        ]);
    }
    out
}

#[derive(Deserialize)]
struct ViewerQuery {
    /// The series shown, from 0 in the list's order.
    s: Option<usize>,
    /// An instance in the case's order: its series is shown, from it.
    i: Option<usize>,
    gain: Option<u32>,
    speed: Option<u32>,
}

/// What the page shows of the chosen series.
struct Viewport {
    series: usize,
    /// Every slice of the series; the first shown is `start`.
    slices: Vec<Slice>,
    start: usize,
    /// The first instance's window, or why it cannot be shown.
    first: Result<daemon::render::FrameInfo, String>,
}

/// The case's series, and the viewport of the one asked for (by its place in the list, or as
/// the series of an instance, from that instance; otherwise the first): its slices, each instance's header read by the
/// structural walk, and its first frame's window.
fn series_and_viewport(
    api: &Api,
    c: &proto::consult::Consultation,
    series_asked: Option<usize>,
    instance_asked: Option<usize>,
) -> Result<(Vec<Series>, Option<Viewport>), ApiError> {
    let shown = instances_of(api, c)?;
    let mut series = series_of(&shown);
    let local = |n: usize| api.cases.archive.objects().local_file(&shown[n].object);
    for s in &mut series {
        if let Ok(f) = local(s.instances[0]) {
            s.about = daemon::render::describe(f.path()).unwrap_or_default();
        }
    }
    let chosen = match (series_asked, instance_asked) {
        (Some(s), _) => Some(s),
        (None, Some(i)) => series.iter().position(|s| s.instances.contains(&i)),
        (None, None) => None,
    }
    .filter(|s| *s < series.len())
    .unwrap_or(0);
    let viewport = series.get(chosen).map(|s| {
        let mut slices = Vec::new();
        let (mut start, mut total) = (0, 0usize);
        for &n in &s.instances {
            if total >= MAX_STACK {
                break;
            }
            if instance_asked == Some(n) {
                start = slices.len();
            }
            let about = if s.waveform {
                Described {
                    frames: 1,
                    ..Described::default()
                }
            } else {
                local(n)
                    .ok()
                    .and_then(|f| daemon::render::describe(f.path()).ok())
                    .unwrap_or(Described {
                        frames: 1,
                        ..Described::default()
                    })
            };
            // MAX_STACK fits a u32, so the fallback is never taken.
            let f = about
                .frames
                .min(u32::try_from(MAX_STACK - total).unwrap_or(1));
            total += f as usize;
            slices.push(Slice {
                n,
                o: shown[n].object.to_string(),
                f,
                p: about.position,
            });
        }
        let first = if s.waveform {
            Ok(daemon::render::FrameInfo {
                frames: 1,
                window: (0.0, 0.0),
            })
        } else {
            let n = slices.get(start).map_or(s.instances[0], |x| x.n);
            local(n)
                .map_err(|e| e.to_string())
                .and_then(|f| daemon::render::info(f.path()).map_err(|e| e.to_string()))
        };
        Viewport {
            series: chosen,
            slices,
            start,
            first,
        }
    });
    Ok((series, viewport))
}

async fn viewer(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ViewerQuery>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let user = session.user.clone();
    let loaded = blocking(move || {
        let (folded, _) = api.cases.readable(&user, from, &id)?;
        api.cases.audited(&user, from, "view_images", &id)?;
        let (series, viewport) = series_and_viewport(&api, &folded.consultation, q.s, q.i)?;
        // Previews stand in for the series still on their way.
        let mut pending = api.cases.previews(&folded.consultation);
        pending.retain(|p| !p.complete());
        Ok((folded.consultation, series, viewport, pending))
    })
    .await;
    let (c, series, viewport, pending) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let paper = Paper::new(q.gain, q.speed);
    let case = c.id.as_str();
    let body = html! {
        h1 { a href={"/cases/" (case)} { (lang.t("case.id")) " " (case) } " · " (lang.t("viewer.title")) }
        @if !pending.is_empty() { section.card #previews { (previews(lang, case, &pending)) } }
        @match &viewport {
            None => { p.muted #no-images { (lang.t("viewer.none")) } }
            Some(v) => {
                div #viewer {
                    aside {
                        h2 { (lang.t("viewer.series")) }
                        (series_list(lang, &series, v.series))
                    }
                    (viewport_markup(lang, case, &series[v.series], v, paper))
                }
                script src="/assets/viewer.js" defer {}
            }
        }
    };
    page(&session, lang.t("viewer.title"), body)
}

fn series_list(lang: Lang, series: &[Series], current: usize) -> Markup {
    html! {
        ul #series {
            @for (k, s) in series.iter().enumerate() {
                li {
                    a class=[(k == current).then_some("current")] href={"?s=" (k)} data-series=(k) {
                        span.badge { (s.modality) }
                        " "
                        @if !s.about.series_number.is_empty() { "#" (s.about.series_number) " " }
                        (s.about.series_description)
                        br;
                        span.muted {
                            (s.instances.len()) " "
                            (lang.t(match (s.waveform, s.instances.len() == 1) {
                                (true, true) => "viewer.waveform",
                                (true, false) => "viewer.waveforms",
                                (false, true) => "viewer.instance",
                                (false, false) => "viewer.instances",
                            }))
                        }
                    }
                }
            }
        }
    }
}

fn viewport_markup(lang: Lang, case: &str, s: &Series, v: &Viewport, paper: Paper) -> Markup {
    let total: u32 = v.slices.iter().map(|x| x.f).sum();
    let stack = serde_json::to_string(&v.slices).unwrap_or_else(|_| "[]".into());
    let Some(first) = v.slices.get(v.start) else {
        return html! { p.muted { (lang.t("viewer.none")) } };
    };
    let first_index: u32 = v.slices[..v.start].iter().map(|x| x.f).sum();
    let about = &s.about;
    let overlay = html! {
        div.overlay.tl {
            span #ov-patient { (about.patient_name) } br;
            span #ov-study { (about.study_description) " " (about.study_date) }
        }
        div.overlay.tr {
            span #ov-series { (s.modality) @if !about.series_number.is_empty() { " #" (about.series_number) } " " (about.series_description) }
        }
    };
    html! {
        section.viewport #viewport
            data-case=(case) data-kind=(if s.waveform { "waveform" } else { "image" })
            data-stack=(stack) data-start=(first_index)
            data-position=(lang.t("viewer.position")) {
            div.tools {
                @if s.waveform {
                    span.group #gains {
                        (lang.t("viewer.gain")) ": "
                        @for g in Paper::GAINS {
                            a.button.secondary class=[(g == paper.gain()).then_some("current")]
                                href={"?s=" (v.series) "&gain=" (g) "&speed=" (paper.speed())} data-gain=(g) { (g) " mm/mV" } " "
                        }
                    }
                    span.group #speeds {
                        (lang.t("viewer.speed")) ": "
                        @for sp in Paper::SPEEDS {
                            a.button.secondary class=[(sp == paper.speed()).then_some("current")]
                                href={"?s=" (v.series) "&gain=" (paper.gain()) "&speed=" (sp)} data-speed=(sp) { (sp) " mm/s" } " "
                        }
                    }
                } @else {
                    span.group #presets hidden[true] data-needs-js {
                        @for (key, w) in presets(&s.modality) {
                            button.secondary type="button" class=[w.is_none().then_some("current")]
                                data-preset=(w.map(|(c, w)| format!("{c},{w}")).unwrap_or_default()) { (lang.t(key)) } " "
                        }
                    }
                    span.group hidden[true] data-needs-js {
                        button.secondary type="button" #zoom-out title=(lang.t("viewer.zoom_out")) { "−" } " "
                        button.secondary type="button" #zoom-in title=(lang.t("viewer.zoom_in")) { "+" } " "
                        button.secondary type="button" #zoom-reset { (lang.t("viewer.zoom_reset")) } " "
                    }
                }
                @if s.waveform {
                    button.secondary type="button" #ecg-fit hidden[true] data-needs-js { (lang.t("viewer.fit")) }
                }
                button.secondary type="button" #fullscreen hidden[true] data-needs-js { (lang.t("viewer.fullscreen")) }
            }
            @if s.waveform {
                div.ecg-box {
                    img #waveform .ecg alt=(lang.t("viewer.ecg"))
                        src={"/cases/" (case) "/waveforms/" (first.n) "?o=" (first.o) "&gain=" (paper.gain()) "&speed=" (paper.speed())};
                }
            } @else {
                div.stage #stage tabindex="0" {
                    @match &v.first {
                        Ok(info) => {
                            img #image alt=(lang.t("viewer.title")) draggable="false"
                                src={"/cases/" (case) "/images/" (first.n) "?o=" (first.o) "&frame=0"}
                                data-wc-auto=(info.window.0) data-ww-auto=(info.window.1);
                        }
                        Err(e) => { p.placeholder #cannot { (lang.t("viewer.cannot")) ": " (e) } }
                    }
                    (overlay)
                    div.overlay.bl {
                        span #slice-no { (first_index + 1) "/" (total) }
                        " "
                        span #slice-pos {
                            @if let Some(p) = first.p { (lang.t("viewer.position")) " " (format!("{p:.1}")) " mm" }
                        }
                    }
                    div.overlay.br { span #wl {} " " span #zoom {} }
                }
            }
            @if total > 1 {
                input #slice type="range" min="1" max=(total) value=(first_index + 1) aria-label=(lang.t("viewer.slice")) hidden[true] data-needs-js;
            }
            p.muted #viewer-help { (lang.t(if s.waveform { "viewer.ecg_help" } else { "viewer.help" })) }
        }
    }
}

/// The case's instance `n`, or the object `o` names if it is an instance of the case's studies
/// from the case's clinic.
fn case_object(
    api: &Api,
    c: &proto::consult::Consultation,
    n: usize,
    o: Option<&str>,
) -> Result<proto::sync::ObjectId, ApiError> {
    match o {
        Some(o) => {
            let object = proto::sync::ObjectId::parse(o)
                .ok_or_else(|| ApiError::bad_request(format!("{o} is not an object id")))?;
            let found = api
                .cases
                .archive
                .instance(&c.clinic, &object)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            match found {
                Some(([_, study, _, _], _)) if c.studies.contains(&study) => Ok(object),
                _ => Err(ApiError::not_found(format!("no image {o} in this case"))),
            }
        }
        None => Ok(instances_of(api, c)?
            .into_iter()
            .nth(n)
            .ok_or_else(|| ApiError::not_found(format!("no image {n} in this case")))?
            .object),
    }
}

/// The file of instance `n` (or of object `o`) of a case `user` may read, the fetch recorded
/// in the audit log first (`view_image`, its target `case/n/what`).
fn fetched(
    api: &Api,
    user: &daemon::accounts::User,
    from: std::net::SocketAddr,
    (id, n): (&proto::consult::ConsultationId, usize),
    o: Option<&str>,
    what: &str,
) -> Result<store::objects::LocalFile, ApiError> {
    let (folded, _) = api.cases.readable(user, from, id)?;
    let object = case_object(api, &folded.consultation, n, o)?;
    api.cases
        .audited_target(user, from, "view_image", &format!("{id}/{n}/{what}"))?;
    api.cases
        .archive
        .objects()
        .local_file(&object)
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[derive(Deserialize)]
struct ImageQuery {
    /// The instance's object, as the viewer page names it: found without listing the case's
    /// instances. Without it, `n` counts in the viewer's order.
    o: Option<String>,
    frame: Option<u32>,
    wc: Option<f64>,
    ww: Option<f64>,
}

/// A frame as PNG. Access is checked like the case page, and every frame fetched is recorded
/// (a frame can be fetched without the viewer page).
async fn image(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    session: Session,
    Path((id, n)): Path<(String, usize)>,
    Query(q): Query<ImageQuery>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let user = session.user.clone();
    let window = q.wc.zip(q.ww);
    let rendered = blocking(move || {
        let what = q.frame.unwrap_or(0).to_string();
        let local = fetched(&api, &user, from, (&id, n), q.o.as_deref(), &what)?;
        crate::render::png(local.path(), q.frame.unwrap_or(0), window).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "cannot_render",
                e.to_string(),
            )
        })
    })
    .await;
    match rendered {
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            png,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct WaveformQuery {
    o: Option<String>,
    gain: Option<u32>,
    speed: Option<u32>,
}

/// A waveform drawn on ECG paper as SVG, at the gain and speed asked for (others: the
/// standard 10 mm/mV and 25 mm/s). Checked and recorded like a frame.
async fn waveform_svg(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    session: Session,
    Path((id, n)): Path<(String, usize)>,
    Query(q): Query<WaveformQuery>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let user = session.user.clone();
    let paper = Paper::new(q.gain, q.speed);
    let drawn = blocking(move || {
        let local = fetched(&api, &user, from, (&id, n), q.o.as_deref(), "waveform")?;
        waveform::svg_file(local.path(), paper).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "cannot_render",
                e.to_string(),
            )
        })
    })
    .await;
    match drawn {
        Ok(svg) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            svg,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The viewer's script: stack scrolling, window/level, zoom and pan, full screen, ECG paper.
async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("viewer.js"),
    )
        .into_response()
}
