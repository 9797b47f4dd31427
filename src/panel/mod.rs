//! The guards' web panel: HTTPS (TLS 1.3 only), served by the daemon on its own thread and runtime so
//! no panel request can slow the decision path. Reads the live feed and the database; writes gate
//! commands (`try_send`, never waiting), visitor passes, accounts and sessions, and an audit entry for
//! every action.
//!
//! - [`server`]: TLS listener and connection limits; [`tls`]: the certificate (site's, or self-signed)
//! - [`routes`]: every route with who may use it; [`security`]: headers and cross-origin refusal
//! - [`auth`]: login, second factor, sessions, the per-route check; [`lockout`], [`password`], [`totp`]
//! - pages: [`lanes`] (live view, gate controls, crops), [`search`], [`passes`], [`admin`], [`account`]

pub mod account;
pub mod admin;
pub mod auth;
pub mod breached;
pub mod html;
pub mod lanes;
pub mod limits;
pub mod live;
pub mod lockout;
pub mod passes;
pub mod password;
pub mod roles;
pub mod routes;
pub mod search;
pub mod security;
pub mod server;
pub mod setup;
pub mod store;
pub mod tls;
pub mod totp;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::clock::SharedClock;
use crate::config::PanelConfig;
use crate::events::EventSink;
use crate::gate::GateHandle;

pub use live::{LiveEvent, LiveHub};
pub use roles::{Perm, Role};

#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("panel database: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("panel: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("panel audit key: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("panel certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("panel cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("panel: {0}")]
    Io(#[from] std::io::Error),
}

/// Fills a buffer from the OS's random source.
pub fn random_bytes(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        // getrandom fails only without any OS entropy source; refuse to go on with weak ids.
        panic!("no OS random source: cannot make session ids or secrets");
    }
}

/// A summary of the daemon for the system page.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// One gate the panel can command, and the lane whose events it belongs to.
#[derive(Clone)]
pub struct GateInfo {
    pub handle: GateHandle,
    pub lane: Option<String>,
}

/// What the panel is given by the daemon.
pub struct PanelDeps {
    pub db_path: PathBuf,
    pub data_dir: PathBuf,
    pub clock: SharedClock,
    pub site: String,
    pub timezone: chrono_tz::Tz,
    pub gates: Vec<GateInfo>,
    pub live: LiveHub,
    /// Each lane's live still (the live page shows them behind signed URLs).
    pub stills: crate::camera::Stills,
    /// Each lane's setup view and region (the installers' setup page).
    pub setups: crate::camera::Setups,
    /// Guards' openings become gate events (uploaded like any other).
    pub sink: Option<EventSink>,
    pub status: StatusFn,
    /// The site's plate key (passes are listed plain or sealed).
    pub plate_key: crate::access::PlateKey,
}

/// What a lane's still URL signs.
pub fn still_id(lane: &str) -> String {
    format!("still:{lane}")
}

/// The panel's shared state; cheap to clone.
#[derive(Clone)]
pub struct Panel(Arc<Inner>);

pub struct Inner {
    pub cfg: PanelConfig,
    pub deps: PanelDeps,
    db: Arc<Mutex<Connection>>,
    pub lockout: lockout::Lockout,
    /// The global bound on password hashing ([`limits::Hashing`]).
    pub hashing: limits::Hashing,
    /// The site's own certificate (`[panel] cert`), DER: the host names it covers are the panel's too.
    pub cert_der: Option<Vec<u8>>,
    /// Failed-login audit rows written this minute: (minute start, written, not itemised).
    failure_audits: Mutex<(DateTime<Utc>, u32, u64)>,
    /// Second-factor keys shown for enrolment, kept here until confirmed (by session id).
    pub pending_totp: Mutex<std::collections::HashMap<String, (String, DateTime<Utc>)>>,
    image_key: [u8; 32],
    audit_key: ed25519_dalek::SigningKey,
}

impl std::ops::Deref for Panel {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Panel {
    /// Runs a password hash or verification under the panel's bound; "busy" becomes a 429 page.
    pub async fn hash_work<T: Send + 'static>(
        &self,
        source: IpAddr,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Failure> {
        let trusted = self.lockout.trusted(source, self.now());
        self.hashing.run(source, trusted, f).await.map_err(|why| {
            tracing::warn!(%source, ?why, "password check refused: hashing is at its limit");
            Failure::Busy
        })
    }
}

/// A request that failed, as the browser sees it: generic pages, details only in the log.
#[derive(Debug)]
pub enum Failure {
    /// Not logged in: API callers get 401, pages a redirect to the login.
    Unauthorized,
    Forbidden,
    NotFound,
    BadRequest(String),
    /// Over a limit (password hashing busy, too many attempts): 429.
    Busy,
    Internal(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Internal(e.to_string())
    }
}

impl From<crate::access::AccessError> for Failure {
    fn from(e: crate::access::AccessError) -> Self {
        Failure::Internal(e.to_string())
    }
}

impl From<crate::audit::AuditError> for Failure {
    fn from(e: crate::audit::AuditError) -> Self {
        Failure::Internal(e.to_string())
    }
}

impl From<crate::events::EventError> for Failure {
    fn from(e: crate::events::EventError) -> Self {
        Failure::Internal(e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Failure::Unauthorized => (StatusCode::UNAUTHORIZED, "Please log in.".to_string()),
            Failure::Forbidden => (StatusCode::FORBIDDEN, "Your role does not allow this.".to_string()),
            Failure::NotFound => (StatusCode::NOT_FOUND, "Not found.".to_string()),
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Failure::Busy => (
                StatusCode::TOO_MANY_REQUESTS,
                "The panel is busy; try again in a few seconds.".to_string(),
            ),
            Failure::Internal(detail) => {
                tracing::error!(error = %detail, "panel request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong; it has been logged.".to_string(),
                )
            }
        };
        let body = html::page(
            status.canonical_reason().unwrap_or("Error"),
            None,
            maud::html! {
                (html::notice("error", &text))
                p { a href="/" { "Back" } }
            },
        );
        (status, body).into_response()
    }
}

/// Who did something, for the audit log.
pub struct Who<'a> {
    pub actor: &'a str,
    pub role: &'a str,
    pub session: Option<&'a str>,
    pub source: IpAddr,
}

impl Panel {
    pub fn new(cfg: PanelConfig, deps: PanelDeps) -> Result<Self, PanelError> {
        let conn = crate::db::open(&deps.db_path)?;
        let audit_key = crate::audit::device_key(&deps.data_dir.join("audit-device.key"))?;
        let mut image_key = [0u8; 32];
        random_bytes(&mut image_key);
        let cert_der = cfg.cert.as_ref().and_then(|path| {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::CertificateDer::pem_file_iter(path)
                .ok()
                .and_then(|mut certs| certs.next())
                .and_then(Result::ok)
                .map(|c| c.to_vec())
        });
        let lockout = lockout::Lockout::new(
            cfg.lockout_failures,
            chrono::Duration::from_std(cfg.lockout_period).unwrap_or(chrono::Duration::minutes(15)),
            cfg.login_per_minute,
        );
        Ok(Self(Arc::new(Inner {
            cfg,
            deps,
            db: Arc::new(Mutex::new(conn)),
            lockout,
            hashing: limits::Hashing::default(),
            pending_totp: Mutex::default(),
            failure_audits: Mutex::new((DateTime::<Utc>::MIN_UTC, 0, 0)),
            cert_der,
            image_key,
            audit_key,
        })))
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.deps.clock.now()
    }

    /// Runs database work off the async runtime.
    pub async fn db<T: Send + 'static, E: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, Failure>
    where
        Failure: From<E>,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| Failure::Internal(e.to_string()))?
        .map_err(Failure::from)
    }

    /// Appends to the audit log and signs a checkpoint of the new head. A failure is logged: the action
    /// itself has happened and is also in the journal.
    pub async fn audit(
        &self,
        who: &Who<'_>,
        action: &str,
        target: Option<String>,
        before: Option<String>,
        after: Option<String>,
    ) {
        let a = crate::audit::Action {
            actor: who.actor.to_string(),
            role: who.role.to_string(),
            session: who.session.map(str::to_string),
            source: Some(who.source.to_string()),
            action: action.to_string(),
            target,
            before,
            after,
        };
        let (now, key) = (self.now(), self.audit_key.clone());
        let db = self.db.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut c = db.lock().unwrap_or_else(|p| p.into_inner());
            crate::audit::append(&mut c, &a, now)?;
            crate::audit::checkpoint(&c, &key, "device", now)
        })
        .await;
        match res {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, action, "audit entry could not be written"),
            Err(e) => tracing::error!(error = %e, action, "audit task failed"),
        }
    }

    /// Audits a failed or refused login (for a name no account has, a refused locked pair, a wrong
    /// code), at most [`limits::FAILURE_AUDITS_PER_MINUTE`] rows a minute: past that, failures are
    /// counted and the count is written as one `login.failures_not_itemised` row with the first failure
    /// after the minute (a count not yet written is lost on restart; the journal has the lines). A flood of wrong logins from many addresses cannot fill the disk
    /// with audit rows (the audit log is never pruned).
    pub async fn audit_failure(&self, who: &Who<'_>, action: &str, target: Option<String>) {
        let now = self.now();
        let (write, summary) = {
            let mut b = self.failure_audits.lock().unwrap_or_else(|p| p.into_inner());
            let mut summary = 0;
            if now - b.0 >= chrono::Duration::minutes(1) {
                summary = b.2;
                *b = (now, 0, 0);
            }
            if b.1 < limits::FAILURE_AUDITS_PER_MINUTE {
                b.1 += 1;
                (true, summary)
            } else {
                b.2 += 1;
                (false, summary)
            }
        };
        if summary > 0 {
            let system = Who {
                actor: "system",
                role: "-",
                session: None,
                source: who.source,
            };
            self.audit(
                &system,
                "login.failures_not_itemised",
                None,
                None,
                Some(format!(
                    "{summary} more failed or refused logins in the minute before (over {} a minute are counted, not itemised)",
                    limits::FAILURE_AUDITS_PER_MINUTE
                )),
            )
            .await;
        }
        if write {
            self.audit(who, action, target, None, None).await;
        } else {
            tracing::debug!(action, "failed login counted, not itemised in the audit log");
        }
    }

    /// A crop URL valid for the configured minutes.
    pub fn image_url(&self, event_id: &str) -> String {
        let exp = self.now().timestamp() + self.cfg.image_url_ttl.as_secs() as i64;
        format!("/img/{event_id}?exp={exp}&sig={}", self.image_sig(event_id, exp))
    }

    /// A lane's live-still URL, signed like a crop's (the signed name is `still:LANE`, which no event id
    /// can be).
    pub fn still_url(&self, lane: &str) -> String {
        self.signed_url(&format!("/lane/{lane}/still"), &still_id(lane))
    }

    /// `path` with an expiry and a signature over `id`, valid for the configured minutes.
    pub fn signed_url(&self, path: &str, id: &str) -> String {
        let exp = self.now().timestamp() + self.cfg.image_url_ttl.as_secs() as i64;
        format!("{path}?exp={exp}&sig={}", self.image_sig(id, exp))
    }

    pub fn image_sig(&self, event_id: &str, exp: i64) -> String {
        use hmac::Mac;
        let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.image_key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(format!("{event_id}|{exp}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn verify_image(&self, event_id: &str, exp: i64, sig: &str) -> bool {
        use hmac::Mac;
        if exp < self.now().timestamp() {
            return false;
        }
        let Ok(sig) = hex::decode(sig) else { return false };
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.image_key) else {
            return false;
        };
        mac.update(format!("{event_id}|{exp}").as_bytes());
        mac.verify_slice(&sig).is_ok()
    }
}
