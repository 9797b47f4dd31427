//! Visitor passes: a plate let in for a window of time on a resident's behalf. They go into the local
//! allowlist (the running snapshot picks them up within a second); a plate already listed as a resident,
//! vendor or blocked is never overwritten from here.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use maud::html;
use serde::Deserialize;

use super::auth::Authed;
use super::html::{done, error, local, page, Flash};
use super::{Failure, Panel};
use crate::access::{store, Entry, Kind};

/// Longest pass a supervisor can issue from the panel.
const MAX_DAYS: i64 = 90;

pub async fn list(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    axum::extract::Query(q): axum::extract::Query<Flash>,
) -> Result<Response, Failure> {
    let entries = p.db(|c| store::of_kind(c, Kind::Visitor)).await?;
    let now = p.now();
    let tz = p.deps.timezone;
    let fmt_input = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%dT%H:%M").to_string();
    let body = html! {
        (q.render())
        h2 { "New pass" }
        form.stack method="post" action="/passes" {
            label { "Plate " input #pass-plate name="plate" required maxlength="12"; }
            label { "Host resident " input #pass-host name="host" required maxlength="80"; }
            label { "Unit " input name="unit" maxlength="20"; }
            label { "Valid from " input name="from" type="datetime-local" value=(fmt_input(now)) required; }
            label { "Valid until " input name="until" type="datetime-local" value=(fmt_input(now + chrono::Duration::hours(24))) required; }
            label { "Note " input name="note" maxlength="200"; }
            button #create-pass { "Create pass" }
        }
        h2 { "Passes" }
        table #passes {
            tr { th { "Plate" } th { "Host" } th { "Unit" } th { "From" } th { "Until" } th {} }
            @for e in entries.iter().filter(|e| e.kind == Kind::Visitor) {
                tr {
                    td.plate { (e.plate) }
                    td { (e.host.as_deref().unwrap_or("")) }
                    td { (e.unit.as_deref().unwrap_or("")) }
                    td { (e.valid_from.map(|t| local(t, tz)).unwrap_or_default()) }
                    td {
                        (e.valid_until.map(|t| local(t, tz)).unwrap_or_default())
                        @if matches!(e.valid_until, Some(u) if u < now) { " " span.muted { "(expired)" } }
                    }
                    td {
                        form method="post" action="/passes/revoke" {
                            input type="hidden" name="plate" value=(e.plate);
                            button.danger { "Revoke" }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Visitor passes", Some(&a), body).into_response())
}

#[derive(Deserialize)]
pub struct PassForm {
    plate: String,
    host: String,
    #[serde(default)]
    unit: String,
    from: String,
    until: String,
    #[serde(default)]
    note: String,
}

fn parse_local(s: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    tz.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc))
}

fn back_error(msg: &str) -> Response {
    error("/passes", msg)
}

pub async fn create(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Form(f): Form<PassForm>,
) -> Result<Response, Failure> {
    let plate = crate::plate::normalize(&f.plate);
    if let Err(e) = crate::plate::validate(&plate) {
        return Ok(back_error(&format!("Plate: {e}")));
    }
    let host = f.host.trim();
    if host.is_empty() {
        return Ok(back_error("Name the host resident."));
    }
    let tz = p.deps.timezone;
    let (Some(from), Some(until)) = (parse_local(&f.from, tz), parse_local(&f.until, tz)) else {
        return Ok(back_error("Give both times as date and time."));
    };
    if until <= from || until - from > chrono::Duration::days(MAX_DAYS) {
        return Ok(back_error(&format!(
            "The pass must end after it starts, within {MAX_DAYS} days."
        )));
    }
    let mut entry = Entry::new(&plate, Kind::Visitor);
    entry.host = Some(host.to_string());
    entry.unit = Some(f.unit.trim().to_string()).filter(|s| !s.is_empty());
    entry.valid_from = Some(from);
    entry.valid_until = Some(until);
    entry.note = Some(f.note.trim().to_string()).filter(|s| !s.is_empty());
    let now = p.now();
    let (e2, plate2, key) = (entry.clone(), plate.clone(), p.deps.plate_key.clone());
    let outcome = p
        .db(move |c| {
            let existing = store::get(c, &plate2, &key)?;
            if let Some(x) = existing.filter(|x| x.kind != Kind::Visitor) {
                return Ok::<_, crate::access::AccessError>(Err(x.kind));
            }
            store::upsert(c, &[e2], now, &key)?;
            Ok(Ok(()))
        })
        .await?;
    if let Err(kind) = outcome {
        return Ok(back_error(&format!(
            "{plate} is already on the list as {kind}; change it there."
        )));
    }
    let after = format!("host {host}, {} to {}", from.to_rfc3339(), until.to_rfc3339());
    p.audit(&a.who(), "pass.create", Some(plate.clone()), None, Some(after))
        .await;
    Ok(done("/passes", &format!("Pass for {plate} created")))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    plate: String,
}

pub async fn revoke(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Form(f): Form<RevokeForm>,
) -> Result<Response, Failure> {
    let plate = crate::plate::normalize(&f.plate);
    let (p2, key) = (plate.clone(), p.deps.plate_key.clone());
    let before = p
        .db(move |c| {
            let Some(x) = store::get(c, &p2, &key)?.filter(|e| e.kind == Kind::Visitor) else {
                return Ok::<_, crate::access::AccessError>(None);
            };
            store::remove(c, &p2, &key)?;
            Ok(Some(format!(
                "host {}, until {}",
                x.host.unwrap_or_default(),
                x.valid_until.map(|t| t.to_rfc3339()).unwrap_or_default()
            )))
        })
        .await?;
    let Some(before) = before else {
        return Ok(back_error(&format!("No visitor pass for {plate}.")));
    };
    p.audit(&a.who(), "pass.revoke", Some(plate.clone()), Some(before), None)
        .await;
    Ok(done("/passes", &format!("Pass for {plate} revoked")))
}
