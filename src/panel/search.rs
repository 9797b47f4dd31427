//! Event search. Plate data is only shown for a stated purpose, and every search is written to the
//! access log (who, when, what, why) and the audit log.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::Authed;
use super::html::{local, notice, page};
use super::{Failure, Panel};

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    plate: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    days: Option<u32>,
}

struct Row {
    id: String,
    lane: String,
    at: i64,
    plate: Option<String>,
    action: String,
    reason: String,
    host: Option<String>,
    guard: Option<String>,
    crop: bool,
}

fn form(q: &SearchQuery, days: u32) -> Markup {
    html! {
        form.row method="get" action="/events" {
            input #plate name="plate" placeholder="Plate (part of it is fine)" value=(q.plate) required;
            input #purpose name="purpose" placeholder="Purpose (required, e.g. incident 2026-114)" value=(q.purpose) required minlength="3" size="34";
            label { "Days " input name="days" type="number" min="1" max="3650" value=(days); }
            button #search { "Search" }
        }
        p.muted { "Every search is recorded with your name and purpose." }
    }
}

pub async fn search(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Query(q): Query<SearchQuery>,
) -> Result<Response, Failure> {
    let days = q.days.unwrap_or(30).clamp(1, 3650);
    let needle = crate::plate::normalize(&q.plate);
    if q.plate.trim().is_empty() && q.purpose.trim().is_empty() {
        return Ok(page("Search events", Some(&a), form(&q, days)).into_response());
    }
    if needle.is_empty() {
        let body = html! { (notice("error", "Enter the plate (letters and digits) to search for.")) (form(&q, days)) };
        return Ok(page("Search events", Some(&a), body).into_response());
    }
    if q.purpose.trim().chars().count() < 3 {
        let body = html! { (notice("error", "State the purpose of this search.")) (form(&q, days)) };
        return Ok(page("Search events", Some(&a), body).into_response());
    }
    let now = p.now();
    let since = (now - chrono::Duration::days(days as i64)).timestamp_millis();
    let (user, purpose, query) = (
        a.user.clone(),
        q.purpose.trim().to_string(),
        format!("plate contains {needle}, last {days} days"),
    );
    let (pattern, logged_query) = (format!("%{needle}%"), query.clone());
    let rows = p
        .db(move |c| {
            crate::events::access_log::record(
                c,
                &format!("panel:{user}"),
                "panel.search",
                &logged_query,
                &purpose,
                now,
            )?;
            let mut st = c.prepare(
                "SELECT id, lane, at, plate, action, reason, host, guard_action, crop_path IS NOT NULL
                 FROM events WHERE plate LIKE ?1 AND at >= ?2 ORDER BY at DESC LIMIT 200",
            )?;
            let rows = st.query_map(rusqlite::params![pattern, since], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    lane: r.get(1)?,
                    at: r.get(2)?,
                    plate: r.get(3)?,
                    action: r.get(4)?,
                    reason: r.get(5)?,
                    host: r.get(6)?,
                    guard: r.get(7)?,
                    crop: r.get(8)?,
                })
            })?;
            Ok::<_, crate::events::EventError>(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    p.audit(
        &a.who(),
        "events.search",
        Some(query),
        None,
        Some(q.purpose.trim().to_string()),
    )
    .await;
    let tz = p.deps.timezone;
    let body = html! {
        (form(&q, days))
        p { (rows.len()) " event(s)." }
        table #results {
            tr { th { "Time" } th { "Lane" } th { "Plate" } th { "Decision" } th { "Host" } th { "Guard" } th { "Crop" } }
            @for r in &rows {
                @let at = chrono::DateTime::from_timestamp_millis(r.at).unwrap_or_default();
                tr {
                    td { (local(at, tz)) }
                    td { (r.lane) }
                    td.plate { (r.plate.as_deref().unwrap_or("")) }
                    td { (r.action) " (" (r.reason) ")" }
                    td { (r.host.as_deref().unwrap_or("")) }
                    td { (r.guard.as_deref().unwrap_or("")) }
                    td {
                        @if r.crop { a href=(p.image_url(&r.id)) { "image" } }
                    }
                }
            }
        }
    };
    Ok(page("Search events", Some(&a), body).into_response())
}
