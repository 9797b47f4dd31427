//! The live lane view, its feed, plate crops behind signed URLs, and the gate controls.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use maud::html;
use serde::Deserialize;

use super::auth::Authed;
use super::html::{done, error, page, Flash};
use super::live::LiveEvent;
use super::roles::Perm;
use super::{Failure, Panel};
use crate::access::{Action, Decision, Reason};
use crate::events::GateEvent;
use crate::gate::{Actor, GateCommand, GateOutcome};

pub async fn live_page(State(p): State<Panel>, Extension(a): Extension<Authed>, Query(q): Query<Flash>) -> Response {
    let buttons: &[(&str, &str, &str, Perm)] = &[
        ("open", "Open once", "ok", Perm::GateOpen),
        ("hold", "Hold open", "warn", Perm::GateHold),
        ("release", "Release", "", Perm::GateHold),
        ("lockdown", "Lockdown", "danger", Perm::GateLockdown),
        ("unlock", "Unlock", "", Perm::GateLockdown),
    ];
    let body = html! {
        (q.render())
        section.gates {
            @for g in &p.deps.gates {
                @let name = g.handle.name();
                @let (state, class) = if g.handle.in_lockdown() {
                    ("LOCKDOWN", "locked")
                } else if g.handle.is_open() {
                    ("OPEN", "open")
                } else {
                    ("closed", "")
                };
                div.gate {
                    div {
                        "Gate "
                        strong { (name) }
                        @if let Some(l) = g.lane.as_deref() { " (lane " (l) ")" }
                        ": "
                        span id={ "state-" (name) } class={ "state " (class) } { (state) }
                    }
                    form.row method="post" action={ "/gate/" (name) "/open" } {
                        input type="hidden" name="event" value="";
                        input id={ "reason-" (name) } name="reason" placeholder="Reason (required)" required minlength="3" maxlength="200";
                        span.for-event.muted {}
                        @for (cmd, label, btn_class, perm) in buttons {
                            @if a.role.may(*perm) {
                                button class=(btn_class) id={ (cmd) "-" (name) } formaction={ "/gate/" (name) "/" (cmd) } { (label) }
                            }
                        }
                    }
                }
            }
        }
        section.stills {
            @for lane in p.deps.stills.names() {
                figure.still {
                    img id={ "still-" (lane) } alt={ "lane " (lane) " now" };
                    figcaption { "Lane " (lane) " " span.muted id={ "still-note-" (lane) } { "waiting for the camera" } }
                }
            }
        }
        p.muted { "Newest first. Select a vehicle to act for it. " span #updated {} }
        section #events aria-live="polite" {}
    };
    page("Live", Some(&a), body).into_response()
}

#[derive(Deserialize)]
pub struct AfterQuery {
    #[serde(default)]
    after: u64,
}

pub async fn live_api(State(p): State<Panel>, Query(q): Query<AfterQuery>) -> Response {
    let events: Vec<serde_json::Value> = p
        .deps
        .live
        .since(q.after, 50)
        .into_iter()
        .map(|e| {
            let img = e.crop.as_ref().map(|_| p.image_url(&e.id));
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            v["img"] = serde_json::json!(img);
            v
        })
        .collect();
    let gates: Vec<serde_json::Value> = p
        .deps
        .gates
        .iter()
        .map(|g| serde_json::json!({"name": g.handle.name(), "open": g.handle.is_open(), "lockdown": g.handle.in_lockdown()}))
        .collect();
    let stills: Vec<serde_json::Value> = p
        .deps
        .stills
        .names()
        .map(|lane| serde_json::json!({"lane": lane, "url": p.still_url(lane)}))
        .collect();
    Json(serde_json::json!({"events": events, "gates": gates, "stills": stills, "now": p.now()})).into_response()
}

#[derive(Deserialize)]
pub struct Signed {
    exp: i64,
    sig: String,
}

/// A plate crop, only with a valid, unexpired signature (and a session allowed to watch the lanes).
pub async fn image(
    State(p): State<Panel>,
    Path(id): Path<String>,
    Query(s): Query<Signed>,
) -> Result<Response, Failure> {
    if !p.verify_image(&id, s.exp, &s.sig) {
        return Err(Failure::Forbidden);
    }
    let bytes = match p.deps.live.get(&id).and_then(|e| e.crop) {
        Some(b) => b.to_vec(),
        None => {
            let lookup = id.clone();
            let path: Option<String> = p
                .db(move |c| {
                    use rusqlite::OptionalExtension;
                    c.query_row("SELECT crop_path FROM events WHERE id = ?1", [&lookup], |r| r.get(0))
                        .optional()
                        .map(Option::flatten)
                })
                .await?;
            let path = path.ok_or(Failure::NotFound)?;
            let path = std::path::PathBuf::from(path);
            let on_disk = tokio::fs::read(&path).await.map_err(|_| Failure::NotFound)?;
            // Sealed when the data folder is encrypted; a crop that does not open is not shown.
            crate::secrets::sealed::from_disk(&path, on_disk).map_err(|_| Failure::NotFound)?
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        bytes,
    )
        .into_response())
}

/// A lane's live still, only with a valid, unexpired signature; asking for it keeps the lane making them
/// for a few seconds ([`crate::camera::still`]). No fresh still (nobody watched until now, or the camera
/// is down): 404, and the page says so.
pub async fn still(
    State(p): State<Panel>,
    Path(name): Path<String>,
    Query(s): Query<Signed>,
) -> Result<Response, Failure> {
    if !p.verify_image(&super::still_id(&name), s.exp, &s.sig) {
        return Err(Failure::Forbidden);
    }
    let lane = p.deps.stills.lane(&name).ok_or(Failure::NotFound)?;
    let still = lane.watch(std::time::Instant::now()).ok_or(Failure::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        still.jpeg.to_vec(),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct GateForm {
    reason: String,
    #[serde(default)]
    event: String,
}

async fn command(p: Panel, a: Authed, relay: String, f: GateForm, kind: &'static str) -> Response {
    let Some(gate) = p.deps.gates.iter().find(|g| g.handle.name() == relay) else {
        return Failure::NotFound.into_response();
    };
    let reason = match crate::gate::validate_reason(&f.reason) {
        Ok(r) => r,
        Err(crate::gate::GateError::BadReason(why)) => return error("/live", &format!("Reason: {why}.")),
        Err(e) => return error("/live", &e.to_string()),
    };
    let actor = Actor::Guard(a.user.clone());
    let cmd = match kind {
        "open" => GateCommand::Open {
            actor,
            reason: reason.clone(),
        },
        "hold" => GateCommand::HoldOpen {
            actor,
            reason: reason.clone(),
        },
        "release" => GateCommand::Release {
            actor,
            reason: reason.clone(),
        },
        "lockdown" => GateCommand::Lockdown {
            actor,
            reason: reason.clone(),
        },
        _ => GateCommand::Unlock {
            actor,
            reason: reason.clone(),
        },
    };
    let result = gate.handle.try_command_reply(cmd);
    let action = format!("gate.{kind}");
    let event = p.deps.live.get(f.event.trim()).filter(|_| !f.event.trim().is_empty());
    let target = Some(match &event {
        Some(e) => format!("{relay} for event {}", e.id),
        None => relay.clone(),
    });
    let reply = match result {
        Ok(reply) => reply,
        Err(e) => {
            p.audit(
                &a.who(),
                &format!("{action}.failed"),
                target,
                None,
                Some(format!("{reason} ({e})")),
            )
            .await;
            return error("/live", &format!("The gate did not take the command: {e}"));
        }
    };
    // What the relay did (the panel has its own runtime: waiting here holds up no decision).
    let outcome = tokio::time::timeout(Duration::from_secs(2), reply)
        .await
        .ok()
        .and_then(Result::ok);
    // No answer in time: judge a refusal by the lockdown flag, as the controller will.
    let in_lockdown = matches!(kind, "open" | "hold") && gate.handle.in_lockdown();
    if outcome == Some(GateOutcome::Lockdown) || (outcome.is_none() && in_lockdown) {
        // The controller refuses to open in lockdown: the audit says so, not that the gate was opened.
        p.audit(
            &a.who(),
            &format!("{action}.refused"),
            target,
            None,
            Some(format!("{reason} (lockdown)")),
        )
        .await;
        return error("/live", "The gate is in lockdown: it will not open.");
    }
    let result = outcome
        .as_ref()
        .map_or_else(|| "no answer from the gate within 2 s".to_string(), ToString::to_string);
    p.audit(&a.who(), &action, target, None, Some(format!("{reason} ({result})")))
        .await;
    if matches!(kind, "open" | "hold") {
        record_override(
            &p,
            &a,
            gate.lane.as_deref().unwrap_or(gate.handle.name()),
            kind,
            &reason,
            &result,
            event,
        )
        .await;
    }
    if outcome == Some(GateOutcome::RelayFailed) {
        return error("/live", &format!("{kind} {relay}: {result}."));
    }
    done("/live", &format!("Done: {kind} {relay} ({result})."))
}

/// A guard's opening is a gate event like any other (stored, uploaded, shown live), naming the guard.
async fn record_override(
    p: &Panel,
    a: &Authed,
    lane: &str,
    kind: &str,
    reason: &str,
    gate_result: &str,
    about: Option<LiveEvent>,
) {
    let now = p.now();
    let plate = about.as_ref().and_then(|e| e.plate.clone()).unwrap_or_default();
    let e = GateEvent {
        id: GateEvent::new_id(now),
        lane: lane.into(),
        at: now,
        first_seen: now,
        plate,
        confidence: about.as_ref().map(|e| e.confidence).unwrap_or(0.0),
        chars: Vec::new(),
        alternatives: Vec::new(),
        reads: 0,
        decision: Decision {
            action: Action::Open,
            alert: false,
            reason: Reason::GuardOverride,
            matched: None,
        },
        crop_jpeg: Vec::new(),
        guard_action: Some(format!("{kind} by {}: {reason}", a.user)),
        gate_result: Some(gate_result.to_string()),
    };
    p.deps.live.publish(LiveEvent::from_event(&e));
    if let Some(sink) = &p.deps.sink {
        match tokio::time::timeout(Duration::from_secs(2), sink.send(e)).await {
            Ok(Ok(())) => {}
            _ => tracing::error!("guard override could not be queued for the event store (in the audit log)"),
        }
    }
}

macro_rules! gate_route {
    ($name:ident, $kind:literal) => {
        pub async fn $name(
            State(p): State<Panel>,
            Extension(a): Extension<Authed>,
            Path(relay): Path<String>,
            Form(f): Form<GateForm>,
        ) -> Response {
            command(p, a, relay, f, $kind).await
        }
    };
}

gate_route!(open, "open");
gate_route!(hold, "hold");
gate_route!(release, "release");
gate_route!(lockdown, "lockdown");
gate_route!(unlock, "unlock");
