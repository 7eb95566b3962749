//! The image viewer: a case's instances, and each frame rendered on the server (window and
//! level, frame number) from the object the page names, checked against the case's studies.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use daemon::api::{blocking, ApiError};
use daemon::web::Session;
use maud::html;
use serde::Deserialize;

use super::cases::{parse_id, previews};
use super::{failed, page, Client};
use crate::api::Api;

/// The viewer page and its frames.
pub(super) fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/cases/{id}/viewer", get(viewer))
        .route("/cases/{id}/images/{n}", get(image))
}

/// One instance of a case, as the viewer lists it.
struct Shown {
    series: String,
    modality: Option<String>,
    object: proto::sync::ObjectId,
}

/// The instances of a case's studies that have arrived, by study, series and instance.
/// The root of the waveform storage SOP classes (ECG, haemodynamic, audio...).
const WAVEFORM_CLASSES: &str = "1.2.840.10008.5.1.4.1.1.9.";

fn instances_of(api: &Api, c: &proto::consult::Consultation) -> Result<Vec<Shown>, ApiError> {
    let mut all = api
        .cases
        .archive
        .study_instances(&c.clinic, &c.studies)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // Images before waveforms (an ECG has no frame to show), then the consultation's order
    // of studies, each series in Instance Number order.
    let study_rank = |study: &str| c.studies.iter().position(|s| s == study);
    all.sort_by_key(|([_, study, series, sop], rec)| {
        (
            rec.sop_class_uid.starts_with(WAVEFORM_CLASSES),
            study_rank(study),
            series.clone(),
            rec.instance_number.unwrap_or(i64::MAX),
            sop.clone(),
        )
    });
    Ok(all
        .into_iter()
        .map(|([_, _, series, _], rec)| Shown {
            series,
            modality: rec.modality,
            object: rec.object,
        })
        .collect())
}

#[derive(Deserialize)]
struct ViewerQuery {
    i: Option<usize>,
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
    let index = q.i.unwrap_or(0);
    let loaded = blocking(move || {
        let (folded, _) = api.cases.readable(&user, from, &id)?;
        api.cases.audited(&user, from, "view_images", &id)?;
        let shown = instances_of(&api, &folded.consultation)?;
        let info = shown.get(index).map(|s| {
            let local = api.cases.archive.objects().local_file(&s.object);
            local
                .map_err(|e| e.to_string())
                .and_then(|f| crate::render::info(f.path()).map_err(|e| e.to_string()))
        });
        // Previews stand in for the series still on their way.
        let mut pending = api.cases.previews(&folded.consultation);
        pending.retain(|p| !p.complete());
        Ok((folded.consultation, shown, info, pending))
    })
    .await;
    let (c, shown, info, pending) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    // Series numbered 1, 2, … in the order listed.
    let series_no: Vec<usize> = shown
        .iter()
        .scan((0usize, None::<&str>), |(n, last), s| {
            if *last != Some(s.series.as_str()) {
                *n += 1;
                *last = Some(s.series.as_str());
            }
            Some(*n)
        })
        .collect();
    let lang = session.lang;
    let presets: [(&str, Option<(i32, i32)>); 5] = [
        ("viewer.preset_default", None),
        ("viewer.preset_lung", Some((-600, 1500))),
        ("viewer.preset_soft", Some((40, 400))),
        ("viewer.preset_bone", Some((400, 1800))),
        ("viewer.preset_brain", Some((40, 80))),
    ];
    let body = html! {
        h1 { a href={"/cases/" (c.id.as_str())} { (lang.t("case.id")) " " (c.id.as_str()) } " · " (lang.t("viewer.title")) }
        @if !pending.is_empty() { section.card #previews { (previews(lang, c.id.as_str(), &pending)) } }
        @if shown.is_empty() {
            p.muted #no-images { (lang.t("viewer.none")) }
        } @else {
            div #viewer {
                aside {
                    h2 { (lang.t("viewer.series")) }
                    ul {
                        @for (n, s) in shown.iter().enumerate() {
                            @if n == 0 || shown[n - 1].series != s.series {
                                li.muted { (s.modality.as_deref().unwrap_or("?")) " · " (lang.t("viewer.series")) " " (series_no[n]) }
                            }
                            li { a class=[(n == index).then_some("current")] href={"?i=" (n)} { "#" (n + 1) } }
                        }
                    }
                    h2 { (lang.t("viewer.preset")) }
                    p { @for (key, w) in presets {
                        button.secondary type="button" data-preset=(w.map(|(c, w)| format!("{c},{w}")).unwrap_or_default()) { (lang.t(key)) } " "
                    } }
                    p.muted { (lang.t("viewer.help")) }
                }
                div.stage {
                    @match &info {
                        Some(Ok(i)) => {
                            img #image alt=(lang.t("viewer.title"))
                                src={"/cases/" (c.id.as_str()) "/images/" (index) "?o=" (shown[index].object) "&frame=0"}
                                data-base={"/cases/" (c.id.as_str()) "/images/" (index) "?o=" (shown[index].object)}
                                data-frames=(i.frames)
                                data-wc="" data-ww=""
                                data-wc-auto=(i.window.0) data-ww-auto=(i.window.1);
                            span.overlay {}
                        }
                        Some(Err(e)) => { p.placeholder #cannot { (lang.t("viewer.cannot")) ": " (e) } }
                        None => { p.placeholder { (lang.t("viewer.none")) } }
                    }
                }
            }
        }
    };
    page(&session, lang.t("viewer.title"), body)
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
        let (folded, _) = api.cases.readable(&user, from, &id)?;
        let c = &folded.consultation;
        let object = match q.o.as_deref() {
            Some(o) => {
                let object = proto::sync::ObjectId::parse(o)
                    .ok_or_else(|| ApiError::bad_request(format!("{o} is not an object id")))?;
                // Only an instance of one of the case's studies, from the case's clinic.
                let found = api
                    .cases
                    .archive
                    .instance(&c.clinic, &object)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                match found {
                    Some(([_, study, _, _], _)) if c.studies.contains(&study) => object,
                    _ => return Err(ApiError::not_found(format!("no image {o} in this case"))),
                }
            }
            None => {
                instances_of(&api, c)?
                    .into_iter()
                    .nth(n)
                    .ok_or_else(|| ApiError::not_found(format!("no image {n} in this case")))?
                    .object
            }
        };
        api.cases.audited_target(
            &user,
            from,
            "view_image",
            &format!("{id}/{n}/{}", q.frame.unwrap_or(0)),
        )?;
        let local = api
            .cases
            .archive
            .objects()
            .local_file(&object)
            .map_err(|e| ApiError::internal(e.to_string()))?;
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
