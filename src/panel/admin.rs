//! Admin pages: users and roles, sessions (one's own, or everyone's for admins), the audit log with its
//! verification, and the system status for installers.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::Authed;
use super::html::{done, error, local, page, Flash};
use super::roles::{Perm, Role, ROLES};
use super::{password, store, Failure, Panel};

fn role_options(selected: Role) -> Markup {
    html! {
        @for r in ROLES.iter() {
            option value=(r) selected[*r == selected] { (r) }
        }
    }
}

pub async fn users(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Query(q): Query<Flash>,
) -> Result<Response, Failure> {
    let users = p.db(|c| store::users(c)).await?;
    let body = html! {
        (q.render())
        h2 { "Add a user" }
        form.stack method="post" action="/users" {
            label { "User name " input #new-name name="name" required pattern="[a-z0-9._-]{2,32}"; }
            label { "Role " select #new-role name="role" { (role_options(Role::Guard)) } }
            label {
                "First password (they should change it) "
                input #new-password name="password" type="password" required minlength="8" autocomplete="new-password";
            }
            button #add-user { "Add" }
        }
        p.muted { "Admins and installers set up their second factor at their first login." }
        h2 { "Users" }
        table #users {
            tr { th { "Name" } th { "Role" } th { "2FA" } th { "State" } th {} }
            @for u in &users {
                @let toggle = if u.disabled { "enable" } else { "disable" };
                tr {
                    td { (u.name) }
                    td {
                        form.row method="post" action={ "/users/" (u.name) "/role" } {
                            select name="role" { (role_options(u.role)) }
                            button { "Set role" }
                        }
                    }
                    td { (if u.totp_secret.is_some() { "on" } else { "off" }) }
                    td { (if u.disabled { "disabled" } else { "active" }) }
                    td {
                        form.row method="post" action={ "/users/" (u.name) "/" (toggle) } {
                            button.warn { (toggle) }
                        }
                        form.row method="post" action={ "/users/" (u.name) "/reset-2fa" } {
                            button { "Reset 2FA" }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Users", Some(&a), body).into_response())
}

fn back(kind: &str, msg: &str) -> Response {
    if kind == "done" {
        done("/users", msg)
    } else {
        error("/users", msg)
    }
}

#[derive(Deserialize)]
pub struct NewUser {
    name: String,
    role: String,
    password: String,
}

pub async fn add_user(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Form(f): Form<NewUser>,
) -> Result<Response, Failure> {
    let name = f.name.trim().to_lowercase();
    if !store::valid_name(&name) {
        return Ok(back("error", "User names are 2-32 of a-z, 0-9, dot, dash, underscore."));
    }
    let Ok(role) = f.role.parse::<Role>() else {
        return Ok(back("error", "Unknown role."));
    };
    if let Some(why) = password::weakness(&f.password, &name) {
        return Ok(back("error", &format!("Password: {why}")));
    }
    let pw = f.password;
    let phc = p
        .hash_work(a.source, move || password::hash(&pw))
        .await?
        .map_err(Failure::Internal)?;
    let (n, now) = (name.clone(), p.now());
    let added = p
        .db(move |c| {
            if store::user(c, &n)?.is_some() {
                return Ok::<_, rusqlite::Error>(false);
            }
            store::add_user(c, &n, role, &phc, None, now)?;
            Ok(true)
        })
        .await?;
    if !added {
        return Ok(back("error", &format!("{name} already exists.")));
    }
    p.audit(
        &a.who(),
        "user.create",
        Some(name.clone()),
        None,
        Some(format!("role {role}")),
    )
    .await;
    Ok(back("done", &format!("{name} added as {role}")))
}

/// Whether another enabled admin remains if `name` stops being one.
fn other_admin(c: &rusqlite::Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(store::users(c)?
        .iter()
        .any(|u| u.name != name && u.role == Role::Admin && !u.disabled))
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn set_role(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Path(name): Path<String>,
    Form(f): Form<RoleForm>,
) -> Result<Response, Failure> {
    let Ok(role) = f.role.parse::<Role>() else {
        return Ok(back("error", "Unknown role."));
    };
    let n = name.clone();
    let before = p
        .db(move |c| {
            let Some(u) = store::user(c, &n)? else {
                return Ok::<_, rusqlite::Error>(Err("No such user."));
            };
            if u.role == Role::Admin && role != Role::Admin && !other_admin(c, &n)? {
                return Ok(Err("That would leave no admin."));
            }
            store::set_role(c, &n, role)?;
            store::delete_all_for(c, &n)?;
            Ok(Ok(u.role))
        })
        .await?;
    match before {
        Err(e) => Ok(back("error", e)),
        Ok(old) => {
            p.audit(
                &a.who(),
                "user.role",
                Some(name.clone()),
                Some(old.to_string()),
                Some(role.to_string()),
            )
            .await;
            Ok(back(
                "done",
                &format!("{name} is now {role}; their sessions were ended"),
            ))
        }
    }
}

async fn set_disabled(p: Panel, a: Authed, name: String, disabled: bool) -> Result<Response, Failure> {
    let n = name.clone();
    let outcome = p
        .db(move |c| {
            let Some(u) = store::user(c, &n)? else {
                return Ok::<_, rusqlite::Error>(Err("No such user."));
            };
            if disabled && u.role == Role::Admin && !other_admin(c, &n)? {
                return Ok(Err("That would leave no admin."));
            }
            store::set_disabled(c, &n, disabled)?;
            store::delete_all_for(c, &n)?;
            Ok(Ok(()))
        })
        .await?;
    if let Err(e) = outcome {
        return Ok(back("error", e));
    }
    let action = if disabled { "user.disable" } else { "user.enable" };
    p.audit(&a.who(), action, Some(name.clone()), None, None).await;
    Ok(back(
        "done",
        &format!("{name} {}", if disabled { "disabled" } else { "enabled" }),
    ))
}

pub async fn disable(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    set_disabled(p, a, name, true).await
}

pub async fn enable(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    set_disabled(p, a, name, false).await
}

pub async fn reset_totp(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let n = name.clone();
    let found = p
        .db(move |c| {
            let ok = store::set_totp(c, &n, None)?;
            store::delete_all_for(c, &n)?;
            Ok::<_, rusqlite::Error>(ok)
        })
        .await?;
    if !found {
        return Ok(back("error", "No such user."));
    }
    p.audit(&a.who(), "user.reset_2fa", Some(name.clone()), None, None)
        .await;
    Ok(back(
        "done",
        &format!("{name}'s second factor was reset; they set it up again at their next login"),
    ))
}

pub async fn sessions(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Query(q): Query<Flash>,
) -> Result<Response, Failure> {
    let all = a.role.may(Perm::ManageUsers);
    let user = (!all).then(|| a.user.clone());
    let list = p.db(move |c| store::sessions(c, user.as_deref())).await?;
    let body = html! {
        (q.render())
        p { (if all { "Everyone's sessions." } else { "Your sessions." }) }
        table #sessions {
            tr { th { "User" } th { "Started" } th { "Last active" } th { "From" } th { "Browser" } th {} }
            @for s in &list {
                tr {
                    td {
                        (s.user)
                        @if s.handle == a.handle { " " strong { "(this one)" } }
                    }
                    td { (local(s.created_at, p.deps.timezone)) }
                    td { (local(s.last_seen, p.deps.timezone)) }
                    td { (s.source) }
                    td.muted { (s.agent) }
                    td {
                        form method="post" action="/sessions/revoke" {
                            input type="hidden" name="handle" value=(s.handle);
                            button.danger { "End" }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Sessions", Some(&a), body).into_response())
}

#[derive(Deserialize)]
pub struct RevokeForm {
    handle: String,
}

pub async fn revoke_session(
    State(p): State<Panel>,
    Extension(a): Extension<Authed>,
    Form(f): Form<RevokeForm>,
) -> Result<Response, Failure> {
    let only = (!a.role.may(Perm::ManageUsers)).then(|| a.user.clone());
    let handle = f.handle.trim().to_string();
    let h = handle.clone();
    let ended = p.db(move |c| store::delete_by_handle(c, &h, only.as_deref())).await?;
    if !ended {
        return Ok(error("/sessions", "No such session."));
    }
    p.audit(&a.who(), "session.revoke", Some(handle), None, None).await;
    Ok(done("/sessions", "Session ended."))
}

pub async fn audit(State(p): State<Panel>, Extension(a): Extension<Authed>) -> Result<Response, Failure> {
    let key = p.audit_key.verifying_key();
    let (report, rows) = p
        .db(move |c| {
            let report = crate::audit::verify(c, &key)?;
            let mut st = c.prepare(
                "SELECT seq, at, actor, role, source, action, target, before, after FROM audit_log ORDER BY seq DESC LIMIT 200",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, crate::audit::AuditError>((report, rows))
        })
        .await?;
    let status = match &report.first_bad {
        None => html! {
            p.notice.ok #audit-status {
                "Chain intact: " (report.entries) " entries, " (report.checkpoints) " signed checkpoint(s)."
            }
        },
        Some((seq, why)) => html! {
            p.notice.error #audit-status { "NOT intact: first bad sequence " (seq) ": " (why) }
        },
    };
    let body = html! {
        (status)
        table #audit {
            tr {
                th { "#" } th { "Time" } th { "Who" } th { "From" } th { "Action" } th { "Target" }
                th { "Before" } th { "After" }
            }
            @for (seq, at, actor, role, source, action, target, before, after) in rows {
                tr {
                    td { (seq) }
                    td {
                        (local(
                            chrono::DateTime::from_timestamp_millis(at).unwrap_or_default(),
                            p.deps.timezone
                        ))
                    }
                    td { (actor) " (" (role) ")" }
                    td { (source.as_deref().unwrap_or("")) }
                    td { (action) }
                    td { (target.as_deref().unwrap_or("")) }
                    td { (before.as_deref().unwrap_or("")) }
                    td { (after.as_deref().unwrap_or("")) }
                }
            }
        }
    };
    Ok(page("Audit log", Some(&a), body).into_response())
}

pub async fn system(State(p): State<Panel>, Extension(a): Extension<Authed>) -> Response {
    let status = (p.deps.status)();
    let body = html! {
        p { "Site " strong { (p.deps.site) } ", gatehouse " (env!("CARGO_PKG_VERSION")) "." }
        h2 { "Gates" }
        table {
            tr { th { "Relay" } th { "State" } th {} }
            @for g in p.deps.gates.iter() {
                tr {
                    td { (g.handle.name()) }
                    td { (if g.handle.is_open() { "open" } else { "closed" }) }
                    td { (if g.handle.in_lockdown() { "LOCKDOWN" } else { "" }) }
                }
            }
        }
        h2 { "Pipeline" }
        pre #status { (serde_json::to_string_pretty(&status).unwrap_or_default()) }
    };
    page("System", Some(&a), body).into_response()
}
