//! Panel accounts and sessions in the daemon's SQLite file.
//!
//! A session id is 128 random bits sent only in the cookie; the table keeps its SHA-256, so a copy of the
//! database does not hand out live sessions. Sessions show and are revoked by a short handle (a prefix of
//! that hash), which is also what the audit log records.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::roles::Role;

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub password: String,
    pub totp_secret: Option<String>,
    pub totp_last_step: i64,
    pub recovery: Vec<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// Where a session is in the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Password accepted; the second factor is still owed.
    Totp,
    /// Password accepted; the role needs a second factor that is not set up yet: only enrollment is open.
    Enroll,
    Full,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Totp => "totp",
            Stage::Enroll => "enroll",
            Stage::Full => "full",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "full" => Stage::Full,
            "enroll" => Stage::Enroll,
            _ => Stage::Totp,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub handle: String,
    pub user: String,
    pub role: Role,
    pub stage: Stage,
    pub created_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub source: String,
    pub agent: String,
}

/// The user name rule: 2-32 of a-z 0-9 . _ -
pub fn valid_name(name: &str) -> bool {
    (2..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(1)?;
    let recovery: String = r.get(5)?;
    Ok(User {
        name: r.get(0)?,
        role: role.parse().unwrap_or(Role::Guard),
        password: r.get(2)?,
        totp_secret: r.get(3)?,
        totp_last_step: r.get(4)?,
        recovery: serde_json::from_str(&recovery).unwrap_or_default(),
        disabled: r.get::<_, i64>(6)? != 0,
        created_at: at(r.get(7)?),
    })
}

const USER_COLS: &str = "name, role, password, totp_secret, totp_last_step, recovery, disabled, created_at";

pub fn user(conn: &Connection, name: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE name = ?1"),
        [name],
        user_row,
    )
    .optional()
}

pub fn users(conn: &Connection) -> rusqlite::Result<Vec<User>> {
    let mut st = conn.prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))?;
    let rows = st.query_map([], user_row)?;
    rows.collect()
}

pub fn add_user(
    conn: &Connection,
    name: &str,
    role: Role,
    password_phc: &str,
    totp: Option<(&str, &[String])>,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let (secret, recovery) = match totp {
        Some((s, r)) => (Some(s), serde_json::to_string(r).unwrap_or_else(|_| "[]".into())),
        None => (None, "[]".into()),
    };
    conn.execute(
        "INSERT INTO users (name, role, password, totp_secret, recovery, created_at, password_changed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![name, role.as_str(), password_phc, secret, recovery, ms(now)],
    )?;
    Ok(())
}

pub fn set_role(conn: &Connection, name: &str, role: Role) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE users SET role = ?2 WHERE name = ?1",
        params![name, role.as_str()],
    )? == 1)
}

pub fn set_disabled(conn: &Connection, name: &str, disabled: bool) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE users SET disabled = ?2 WHERE name = ?1",
        params![name, disabled as i64],
    )? == 1)
}

pub fn set_password(conn: &Connection, name: &str, phc: &str, now: DateTime<Utc>) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE users SET password = ?2, password_changed_at = ?3 WHERE name = ?1",
        params![name, phc, ms(now)],
    )? == 1)
}

/// Sets (or clears) the second factor and its recovery codes.
pub fn set_totp(conn: &Connection, name: &str, totp: Option<(&str, &[String])>) -> rusqlite::Result<bool> {
    let (secret, recovery) = match totp {
        Some((s, r)) => (Some(s), serde_json::to_string(r).unwrap_or_else(|_| "[]".into())),
        None => (None, "[]".into()),
    };
    Ok(conn.execute(
        "UPDATE users SET totp_secret = ?2, recovery = ?3, totp_last_step = 0 WHERE name = ?1",
        params![name, secret, recovery],
    )? == 1)
}

/// Records the step of an accepted code, only if it is later than the last one (two racing logins with the
/// same code: one wins).
pub fn use_totp_step(conn: &Connection, name: &str, step: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE users SET totp_last_step = ?2 WHERE name = ?1 AND totp_last_step < ?2",
        params![name, step],
    )? == 1)
}

/// Spends a recovery code: true when it was unused.
pub fn use_recovery(conn: &mut Connection, name: &str, code_hash: &str) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let Some(u) = user(&tx, name)? else { return Ok(false) };
    let Some(pos) = u.recovery.iter().position(|h| h == code_hash) else {
        return Ok(false);
    };
    let mut left = u.recovery;
    left.remove(pos);
    tx.execute(
        "UPDATE users SET recovery = ?2 WHERE name = ?1",
        params![name, serde_json::to_string(&left).unwrap_or_else(|_| "[]".into())],
    )?;
    tx.commit()?;
    Ok(true)
}

fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The short handle of a session id.
pub fn handle_of(id: &str) -> String {
    id_hash(id)[..16].to_string()
}

/// A new session; returns its id (for the cookie only).
pub fn create_session(
    conn: &Connection,
    user: &str,
    stage: Stage,
    source: &str,
    agent: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<String> {
    let mut raw = [0u8; 16];
    super::random_bytes(&mut raw);
    let id = hex::encode(raw);
    let agent: String = agent.chars().take(120).collect();
    conn.execute(
        "INSERT INTO panel_sessions (id_hash, user, stage, created_at, last_seen, source, agent)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
        params![id_hash(&id), user, stage.as_str(), ms(now), source, agent],
    )?;
    Ok(id)
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    let hash: String = r.get(0)?;
    let role: String = r.get(2)?;
    let stage: String = r.get(3)?;
    Ok(Session {
        handle: hash[..16.min(hash.len())].to_string(),
        user: r.get(1)?,
        role: role.parse().unwrap_or(Role::Guard),
        stage: Stage::parse(&stage),
        created_at: at(r.get(4)?),
        last_seen: at(r.get(5)?),
        source: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
        agent: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
    })
}

const SESSION_COLS: &str = "s.id_hash, s.user, u.role, s.stage, s.created_at, s.last_seen, s.source, s.agent";

/// The live session of an id, or `None` (unknown, expired, user disabled). An expired one is deleted.
/// `touch` renews its idle time (at most once a minute, to spare the disk).
pub fn lookup(
    conn: &Connection,
    id: &str,
    now: DateTime<Utc>,
    idle: Duration,
    absolute: Duration,
    touch: bool,
) -> rusqlite::Result<Option<Session>> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let h = id_hash(id);
    let s = conn
        .query_row(
            &format!(
                "SELECT {SESSION_COLS} FROM panel_sessions s JOIN users u ON u.name = s.user
                 WHERE s.id_hash = ?1 AND u.disabled = 0"
            ),
            [&h],
            session_row,
        )
        .optional()?;
    let Some(mut s) = s else { return Ok(None) };
    // A login half done (second factor owed) lives five minutes at most.
    let idle = if s.stage == Stage::Full {
        idle
    } else {
        idle.min(Duration::minutes(5))
    };
    if now - s.last_seen > idle || now - s.created_at > absolute {
        conn.execute("DELETE FROM panel_sessions WHERE id_hash = ?1", [&h])?;
        return Ok(None);
    }
    if touch && now - s.last_seen > Duration::seconds(60) {
        conn.execute(
            "UPDATE panel_sessions SET last_seen = ?2 WHERE id_hash = ?1",
            params![h, ms(now)],
        )?;
        s.last_seen = now;
    }
    Ok(Some(s))
}

pub fn delete_session(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM panel_sessions WHERE id_hash = ?1", [id_hash(id)])? == 1)
}

/// Ends a session by its handle; with `user`, only one of that user's.
pub fn delete_by_handle(conn: &Connection, handle: &str, user: Option<&str>) -> rusqlite::Result<bool> {
    if handle.len() != 16 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let pattern = format!("{handle}%");
    let n = match user {
        Some(u) => conn.execute(
            "DELETE FROM panel_sessions WHERE id_hash LIKE ?1 AND user = ?2",
            params![pattern, u],
        )?,
        None => conn.execute("DELETE FROM panel_sessions WHERE id_hash LIKE ?1", [pattern])?,
    };
    Ok(n > 0)
}

/// Ends every session of a user; returns how many.
pub fn delete_all_for(conn: &Connection, user: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM panel_sessions WHERE user = ?1", [user])
}

/// Sessions, newest first (one user's, or everyone's).
pub fn sessions(conn: &Connection, user: Option<&str>) -> rusqlite::Result<Vec<Session>> {
    let sql = format!(
        "SELECT {SESSION_COLS} FROM panel_sessions s JOIN users u ON u.name = s.user
         WHERE (?1 IS NULL OR s.user = ?1) ORDER BY s.created_at DESC LIMIT 500"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map([user], session_row)?;
    rows.collect()
}

/// Drops sessions past their absolute age (housekeeping).
pub fn purge_sessions(conn: &Connection, now: DateTime<Utc>, absolute: Duration) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM panel_sessions WHERE created_at < ?1", [ms(now - absolute)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_idle_and_absolute_and_are_stored_hashed() {
        let dir = tempfile::tempdir().expect("tmp");
        let conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("t");
        add_user(&conn, "ann", Role::Guard, "phc", None, t0).expect("user");
        let id = create_session(&conn, "ann", Stage::Full, "10.0.0.5", "test", t0).expect("session");
        let stored: i64 = conn
            .query_row("SELECT COUNT(*) FROM panel_sessions WHERE id_hash = ?1", [&id], |r| {
                r.get(0)
            })
            .expect("q");
        assert_eq!(stored, 0, "the raw id is not stored");
        let (idle, abs) = (Duration::minutes(60), Duration::hours(12));
        let mut t = t0;
        for _ in 0..12 {
            t += Duration::minutes(59);
            assert!(
                lookup(&conn, &id, t, idle, abs, true).expect("q").is_some(),
                "kept alive by use"
            );
        }
        t += Duration::minutes(59);
        assert!(
            lookup(&conn, &id, t, idle, abs, true).expect("q").is_none(),
            "absolute expiry"
        );
        let id2 = create_session(&conn, "ann", Stage::Full, "10.0.0.5", "test", t).expect("session");
        assert!(
            lookup(&conn, &id2, t + Duration::minutes(61), idle, abs, true)
                .expect("q")
                .is_none(),
            "idle"
        );
        let id3 = create_session(&conn, "ann", Stage::Full, "10.0.0.5", "test", t).expect("session");
        set_disabled(&conn, "ann", true).expect("disable");
        assert!(
            lookup(&conn, &id3, t, idle, abs, true).expect("q").is_none(),
            "disabled user"
        );
    }
}
