//! The installers' setup page: each lane's newest read frame with its region of interest and the plates
//! found (pixel width, confidence, advice), the camera's frame rate and the recognition time; the region is
//! dragged on the frame (or typed) and saved. A saved region applies to the next frame, is checked by the
//! config's rule, audited with its before and after, and kept in the database (`meta.lane_regions`) so it
//! outlives a restart.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use maud::html;
use serde::Deserialize;

use super::auth::Authed;
use super::html::{done, error, page, Flash};
use super::{Failure, Panel};
use crate::config::Roi;
use crate::db::MetaKey;

/// What a lane's setup-view URL signs.
pub fn view_id(lane: &str) -> String {
    format!("setup:{lane}")
}

pub async fn setup_page(State(p): State<Panel>, Extension(a): Extension<Authed>, Query(q): Query<Flash>) -> Response {
    let body = html! {
        (q.render())
        p.muted {
            "The newest frame each lane read, refreshed about once a second while this page is open (the lane then \
             reads every frame). Drag on the frame to draw the region the reader looks at, or type it, then save."
        }
        @for (lane, setup) in p.deps.setups.lanes() {
            @let r = setup.roi.get().unwrap_or(Roi { x: 0.0, y: 0.0, width: 1.0, height: 1.0 });
            section.setup data-lane=(lane) {
                h2 { "Lane " (lane) }
                div.setup-frame id={ "frame-" (lane) } {
                    img id={ "view-" (lane) } alt={ "lane " (lane) ", newest read frame" };
                    svg id={ "overlay-" (lane) } {}
                }
                p.muted id={ "stats-" (lane) } { "waiting for a frame" }
                ul.plates id={ "plates-" (lane) } {}
                form.row method="post" action={ "/setup/" (lane) "/region" } {
                    @for (name, v) in [("x", r.x), ("y", r.y), ("width", r.width), ("height", r.height)] {
                        label { (name) " "
                            input id={ (name) "-" (lane) } name=(name) type="number" min="0" max="1" step="0.01"
                                value=(format!("{v:.2}")) required;
                        }
                    }
                    button.ok id={ "save-" (lane) } { "Save region" }
                }
            }
        }
    };
    page("Lane setup", Some(&a), body).into_response()
}

/// Every lane's newest view as JSON (frame size, region, plates with advice, frame rate, recognition
/// time, and a signed URL of the image).
pub async fn setup_api(State(p): State<Panel>) -> Response {
    let now = std::time::Instant::now();
    let lanes: Vec<serde_json::Value> = p
        .deps
        .setups
        .lanes()
        .map(|(lane, setup)| {
            let view = setup.watch(now);
            serde_json::json!({
                "lane": lane,
                "roi": setup.roi.get(),
                "img": view.as_ref().map(|_| p.signed_url(&format!("/lane/{lane}/view"), &view_id(lane))),
                "age_ms": view.as_ref().map(|v| now.saturating_duration_since(v.made).as_millis() as u64),
                "frame": view.as_ref().map(|v| serde_json::json!({"width": v.frame_width, "height": v.frame_height})),
                "plates": view.as_ref().map(|v| v.plates.clone()).unwrap_or_default(),
                "fps": view.as_ref().and_then(|v| v.fps),
                "recognition_ms": view.as_ref().map(|v| v.recognition_ms),
            })
        })
        .collect();
    Json(serde_json::json!({ "lanes": lanes })).into_response()
}

#[derive(Deserialize)]
pub struct Signed {
    exp: i64,
    sig: String,
}

/// A lane's newest setup view image, only with a valid, unexpired signature.
pub async fn view_image(
    State(p): State<Panel>,
    Path(name): Path<String>,
    Query(s): Query<Signed>,
) -> Result<Response, Failure> {
    if !p.verify_image(&view_id(&name), s.exp, &s.sig) {
        return Err(Failure::Forbidden);
    }
    let setup = p.deps.setups.lane(&name).ok_or(Failure::NotFound)?;
    let view = setup.watch(std::time::Instant::now()).ok_or(Failure::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        view.jpeg.to_vec(),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct RegionForm {
    x: f32,
    y: f32,
    width: f32,
    height: f32,
}

/// Saves a lane's region: checked, applied to the next frame, kept in the database, audited.
pub async fn save_region(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Path(name): Path<String>,
    Form(f): Form<RegionForm>,
) -> Response {
    let Some(setup) = p.deps.setups.lane(&name) else {
        return Failure::NotFound.into_response();
    };
    let new = Roi {
        x: f.x,
        y: f.y,
        width: f.width,
        height: f.height,
    };
    if !new.is_valid() {
        return error(
            "/setup",
            "That region is not inside the frame: x, y, width and height are fractions of the frame (0 to 1), \
             x + width and y + height at most 1, width and height over 0.05.",
        );
    }
    let before = setup.roi.get();
    let (lane, saved) = (name.clone(), new);
    let stored = p
        .db(move |c| -> Result<(), rusqlite::Error> {
            let mut all: std::collections::BTreeMap<String, Roi> = crate::db::meta_get(c, MetaKey::LaneRegions)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            all.insert(lane, saved);
            let text = serde_json::to_string(&all).unwrap_or_default();
            crate::db::meta_set(c, MetaKey::LaneRegions, &text)
        })
        .await;
    if let Err(e) = stored {
        tracing::error!(lane = %name, error = ?e, "region could not be saved");
        return error(
            "/setup",
            "The region could not be saved (the database is not writable); nothing changed.",
        );
    }
    setup.roi.set(Some(new));
    let show = |r: Option<Roi>| {
        r.map_or_else(
            || "whole frame".to_string(),
            |r| format!("x={:.2} y={:.2} w={:.2} h={:.2}", r.x, r.y, r.width, r.height),
        )
    };
    tracing::info!(lane = %name, before = %show(before), after = %show(Some(new)), user = %a.user, "lane region changed");
    p.audit(
        &a.who(),
        "lane.region",
        Some(name.clone()),
        Some(show(before)),
        Some(show(Some(new))),
    )
    .await;
    done("/setup", &format!("Region of lane {name} saved: {}.", show(Some(new))))
}
