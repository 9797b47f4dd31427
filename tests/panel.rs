//! The guard panel in process (its router, a real SQLite file, a real gate controller on a simulated
//! relay, a manual clock), plus the real TLS listener for the protocol checks.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use chrono::{TimeZone, Utc};
use tower::ServiceExt;

use gatehouse::clock::ManualClock;
use gatehouse::config::{PanelConfig, RelayConfig, RelayKind, SafeState};
use gatehouse::gate::{self, Relay, SimulatedRelay, Transition};
use gatehouse::panel::auth::Source;
use gatehouse::panel::store::{self, Stage};
use gatehouse::panel::{routes, totp, GateInfo, LiveEvent, LiveHub, Panel, PanelDeps, Role};

pub const HOST: &str = "gate.test";

pub fn panel_config() -> PanelConfig {
    PanelConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        cert: None,
        key: None,
        hostnames: vec!["localhost".into(), HOST.into()],
        idle: chrono::Duration::minutes(120),
        absolute: chrono::Duration::hours(13),
        lockout_failures: 5,
        lockout_period: Duration::from_secs(15 * 60),
        login_per_minute: 1000,
        image_url_ttl: Duration::from_secs(120),
        totp_for_all_roles: false,
    }
}

pub struct Harness {
    pub router: Router,
    pub panel: Panel,
    pub clock: ManualClock,
    pub live: LiveHub,
    pub transitions: Arc<Mutex<Vec<Transition>>>,
    pub dir: tempfile::TempDir,
}

/// A panel on a fresh database with one gate ("main", a real controller on a simulated relay).
pub fn harness() -> Harness {
    harness_with(panel_config())
}

/// The same with a panel configuration of the test's own.
pub fn harness_with(cfg: PanelConfig) -> Harness {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).single().expect("t"));
    let relay = SimulatedRelay::new("main", None).expect("relay");
    let transitions = relay.transitions.clone();
    let shared: gate::safety::SharedRelay = Arc::new(Mutex::new(Box::new(relay) as Box<dyn Relay>));
    let rc = RelayConfig {
        name: "main".into(),
        kind: RelayKind::Simulated { log: None },
        active_low: false,
        pulse: Duration::from_millis(300),
        cooldown: Duration::from_millis(100),
        max_hold: Duration::from_secs(60),
        safe_state: SafeState::Closed,
    };
    let (handle, fut) = gate::run_controller(rc, shared, tokio_util::sync::CancellationToken::new());
    tokio::spawn(fut);
    let live = LiveHub::default();
    let deps = PanelDeps {
        db_path: dir.path().join("gatehouse.db"),
        data_dir: dir.path().to_path_buf(),
        clock: Arc::new(clock.clone()),
        site: "Test site".into(),
        timezone: chrono_tz::UTC,
        gates: vec![GateInfo {
            handle,
            lane: Some("entry".into()),
        }],
        live: live.clone(),
        stills: gatehouse::camera::Stills::new(["entry"]),
        setups: gatehouse::camera::Setups::new([("entry", None)]),
        sink: None,
        status: Arc::new(|| serde_json::json!({"ok": true})),
        plate_key: gatehouse::access::PlateKey::from_bytes([9; 32]),
    };
    let panel = Panel::new(cfg, deps).expect("panel");
    Harness {
        router: routes::router(panel.clone()),
        panel,
        clock,
        live,
        transitions,
        dir,
    }
}

pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub cookie: Option<&'a str>,
    pub form: Option<&'a str>,
    pub source: &'a str,
    pub origin: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub fn get(path: &'a str) -> Self {
        Self {
            method: "GET",
            path,
            cookie: None,
            form: None,
            source: "10.0.0.5",
            origin: None,
        }
    }
    pub fn post(path: &'a str, form: &'a str) -> Self {
        Self {
            method: "POST",
            path,
            cookie: None,
            form: Some(form),
            source: "10.0.0.5",
            origin: Some("https://gate.test"),
        }
    }
    pub fn cookie(mut self, c: &'a str) -> Self {
        self.cookie = Some(c);
        self
    }
    pub fn from(mut self, ip: &'a str) -> Self {
        self.source = ip;
        self
    }
    pub fn origin(mut self, o: Option<&'a str>) -> Self {
        self.origin = o;
        self
    }
}

impl Harness {
    pub async fn call(&self, c: Call<'_>) -> Response {
        self.call_host(c, HOST).await
    }

    /// The response body as text.
    pub async fn body(&self, c: Call<'_>) -> String {
        let r = self.call(c).await;
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 22).await.expect("body");
        String::from_utf8_lossy(&bytes).to_string()
    }

    /// A logged-in session for an existing user.
    pub fn session_for(&self, name: &str) -> String {
        let conn = gatehouse::db::open(&self.dir.path().join("gatehouse.db")).expect("db");
        store::create_session(&conn, name, Stage::Full, "10.0.0.5", "test", self.clock_now()).expect("session")
    }

    /// A user's TOTP secret as stored.
    pub fn secret_of(&self, name: &str) -> Option<String> {
        let conn = gatehouse::db::open(&self.dir.path().join("gatehouse.db")).expect("db");
        store::user(&conn, name).expect("q").and_then(|u| u.totp_secret)
    }

    /// A request with the given `Host` header.
    pub async fn call_host(&self, c: Call<'_>, host: &str) -> Response {
        let mut b = Request::builder()
            .method(c.method)
            .uri(c.path)
            .header(header::HOST, host)
            .header(header::USER_AGENT, "panel-test");
        if let Some(k) = c.cookie {
            b = b.header(header::COOKIE, format!("__Host-gh_session={k}"));
        }
        if let Some(o) = c.origin {
            b = b.header(header::ORIGIN, o);
        }
        let body = match c.form {
            Some(f) => {
                b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f.to_string())
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).expect("request");
        req.extensions_mut()
            .insert(Source(c.source.parse::<IpAddr>().expect("ip")));
        self.router.clone().oneshot(req).await.expect("infallible")
    }

    /// A user with a password (and a TOTP secret when asked).
    pub fn user(&self, name: &str, role: Role, password: &str, with_totp: bool) -> Option<String> {
        let conn = gatehouse::db::open(&self.dir.path().join("gatehouse.db")).expect("db");
        let phc = gatehouse::panel::password::hash(password).expect("hash");
        let secret = with_totp.then(totp::new_secret);
        let (_, hashes) = totp::new_recovery_codes();
        store::add_user(
            &conn,
            name,
            role,
            &phc,
            secret.as_deref().map(|s| (s, hashes.as_slice())),
            Utc::now(),
        )
        .expect("add user");
        secret
    }

    /// A logged-in session for a role, made directly in the store (no login round trip).
    pub fn session(&self, role: Role) -> String {
        let conn = gatehouse::db::open(&self.dir.path().join("gatehouse.db")).expect("db");
        let name = format!("{}-user", role.as_str());
        if store::user(&conn, &name).expect("q").is_none() {
            store::add_user(&conn, &name, role, "x", None, Utc::now()).expect("add");
        }
        store::create_session(&conn, &name, Stage::Full, "10.0.0.5", "test", self.clock_now()).expect("session")
    }

    fn clock_now(&self) -> chrono::DateTime<Utc> {
        use gatehouse::clock::Clock;
        self.clock.now()
    }

    pub fn audit_actions(&self) -> Vec<String> {
        let conn = gatehouse::db::open(&self.dir.path().join("gatehouse.db")).expect("db");
        let mut st = conn.prepare("SELECT action FROM audit_log ORDER BY seq").expect("prep");
        let rows = st.query_map([], |r| r.get::<_, String>(0)).expect("q");
        rows.map(|r| r.expect("row")).collect()
    }

    pub fn pulses(&self) -> usize {
        self.transitions
            .lock()
            .expect("lock")
            .iter()
            .filter(|t| t.energized)
            .count()
    }
}

pub fn set_cookie(r: &Response) -> Option<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix("__Host-gh_session=")
                .map(|rest| rest.split(';').next().unwrap_or("").to_string())
        })
        .filter(|v| !v.is_empty())
}

pub fn location(r: &Response) -> String {
    r.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Password login, then the code when one is owed; returns the final session cookie.
async fn login(h: &Harness, user: &str, pw: &str, code: Option<&str>, from: &str) -> (StatusCode, Option<String>) {
    let form = format!("user={user}&password={pw}");
    let r = h.call(Call::post("/login", &form).from(from)).await;
    let Some(cookie) = set_cookie(&r) else {
        return (r.status(), None);
    };
    match code {
        None => (r.status(), Some(cookie)),
        Some(code) => {
            assert_eq!(location(&r), "/login/totp");
            let r = h
                .call(
                    Call::post("/login/totp", &format!("code={code}"))
                        .cookie(&cookie)
                        .from(from),
                )
                .await;
            (r.status(), set_cookie(&r))
        }
    }
}

// guard, supervisor, admin, installer: the documented permission matrix (docs/panel.md), written out
// here independently of the server's own table.
const MATRIX: &[(&str, &str, [bool; 4])] = &[
    ("GET", "/live", [true, true, true, true]),
    ("GET", "/api/live", [true, true, true, true]),
    ("GET", "/img/{id}", [true, true, true, true]),
    ("GET", "/lane/{name}/still", [true, true, true, true]),
    ("POST", "/gate/{relay}/open", [true, true, true, true]),
    ("POST", "/gate/{relay}/hold", [true, true, true, false]),
    ("POST", "/gate/{relay}/release", [true, true, true, false]),
    ("POST", "/gate/{relay}/lockdown", [false, true, true, false]),
    ("POST", "/gate/{relay}/unlock", [false, true, true, false]),
    ("GET", "/events", [true, true, true, false]),
    ("GET", "/passes", [false, true, true, false]),
    ("POST", "/passes", [false, true, true, false]),
    ("POST", "/passes/revoke", [false, true, true, false]),
    ("GET", "/users", [false, false, true, false]),
    ("POST", "/users", [false, false, true, false]),
    ("POST", "/users/{name}/role", [false, false, true, false]),
    ("POST", "/users/{name}/disable", [false, false, true, false]),
    ("POST", "/users/{name}/enable", [false, false, true, false]),
    ("POST", "/users/{name}/reset-2fa", [false, false, true, false]),
    ("GET", "/sessions", [true, true, true, true]),
    ("POST", "/sessions/revoke", [true, true, true, true]),
    ("GET", "/account", [true, true, true, true]),
    ("POST", "/account/password", [true, true, true, true]),
    ("GET", "/account/totp", [true, true, true, true]),
    ("POST", "/account/totp", [true, true, true, true]),
    ("POST", "/account/totp/disable", [true, true, true, true]),
    ("GET", "/audit", [false, true, true, true]),
    ("GET", "/system", [false, false, true, true]),
    ("GET", "/setup", [false, false, true, true]),
    ("GET", "/api/setup", [false, false, true, true]),
    ("GET", "/lane/{name}/view", [false, false, true, true]),
    ("POST", "/setup/{name}/region", [false, false, true, true]),
    ("GET", "/", [true, true, true, true]),
    ("POST", "/logout", [true, true, true, true]),
    ("GET", "/login", [true, true, true, true]),
    ("POST", "/login", [true, true, true, true]),
    ("GET", "/static/app.js", [true, true, true, true]),
    ("GET", "/static/panel.css", [true, true, true, true]),
];

/// Routes a logged-out browser may use.
const PUBLIC: &[&str] = &["/login", "/static/app.js", "/static/panel.css"];

#[tokio::test]
async fn every_route_for_every_role_allowed_and_denied() {
    let h = harness();
    // Every served route is in the matrix, and every matrix row is a served route.
    for r in routes::ROUTES {
        let listed = MATRIX.iter().any(|(m, p, _)| *m == r.method && *p == r.path) || r.path == "/login/totp";
        assert!(listed, "route {} {} has no row in the test's matrix", r.method, r.path);
    }
    for (m, p, _) in MATRIX {
        assert!(
            routes::ROUTES.iter().any(|r| r.method == *m && r.path == *p),
            "matrix row {m} {p} is not a route"
        );
    }
    let roles = [Role::Guard, Role::Supervisor, Role::Admin, Role::Installer];
    let mut cells = 0;
    for (method, pattern, allowed) in MATRIX {
        let path = pattern
            .replace("{relay}", "main")
            .replace("{name}", "nobody")
            .replace("{id}", "00000000-0000-0000-0000-000000000000");
        for (i, role) in roles.iter().enumerate() {
            let cookie = h.session(*role);
            let call = if *method == "GET" {
                Call::get(&path).cookie(&cookie)
            } else {
                Call::post(&path, "reason=route+test&plate=ZZZ999&handle=0&role=guard").cookie(&cookie)
            };
            let status = h.call(call).await.status();
            if allowed[i] {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{role:?} should reach {method} {pattern}, got {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role:?} must be refused {method} {pattern}"
                );
            }
            cells += 1;
        }
        // Logged out: only the public routes answer.
        let call = if *method == "GET" {
            Call::get(&path)
        } else {
            Call::post(&path, "reason=x")
        };
        let r = h.call(call).await;
        if PUBLIC.contains(&path.as_str()) {
            assert!(
                r.status().is_success() || r.status() == StatusCode::UNPROCESSABLE_ENTITY,
                "{method} {pattern}"
            );
        } else if *method == "POST" && path == "/login" {
            assert_ne!(r.status(), StatusCode::FORBIDDEN);
        } else {
            let s = r.status();
            assert!(
                s == StatusCode::UNAUTHORIZED || (s == StatusCode::SEE_OTHER && location(&r) == "/login"),
                "logged out {method} {pattern}: {s}"
            );
        }
    }
    assert_eq!(cells, MATRIX.len() * 4);
    // The second-factor step is for half-done logins only.
    let cookie = h.session(Role::Guard);
    assert_eq!(location(&h.call(Call::get("/login/totp").cookie(&cookie)).await), "/");
}

#[tokio::test]
async fn a_totp_code_works_once() {
    let h = harness();
    let secret = h
        .user("ann", Role::Admin, "blue harbour lantern", true)
        .expect("secret");
    use gatehouse::clock::Clock;
    let code = totp::code(&secret, h.clock.now()).expect("code");
    let (status, cookie) = login(&h, "ann", "blue+harbour+lantern", Some(&code), "10.0.0.5").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("logged in");
    assert_eq!(
        h.call(Call::get("/users").cookie(&cookie)).await.status(),
        StatusCode::OK
    );
    // Same code again (same 30 s window): refused.
    let (status, cookie2) = login(&h, "ann", "blue+harbour+lantern", Some(&code), "10.0.0.5").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie2.is_none());
    // The next step's code works.
    h.clock.advance(chrono::Duration::seconds(30));
    let next = totp::code(&secret, h.clock.now()).expect("code");
    let (status, _) = login(&h, "ann", "blue+harbour+lantern", Some(&next), "10.0.0.5").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let actions = h.audit_actions();
    assert!(actions.contains(&"login.totp_failed".to_string()), "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "login").count(), 2, "{actions:?}");
}

#[tokio::test]
async fn five_failures_lock_the_account_from_that_source_for_15_minutes() {
    let h = harness();
    h.user("bob", Role::Guard, "night shift coffee", false);
    for _ in 0..5 {
        let (status, c) = login(&h, "bob", "wrong+password", None, "10.9.9.9").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(c.is_none());
    }
    // The right password from the same source: still locked.
    let (status, c) = login(&h, "bob", "night+shift+coffee", None, "10.9.9.9").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(c.is_none());
    // The booth tablet (another source) is not locked out.
    let (status, c) = login(&h, "bob", "night+shift+coffee", None, "10.0.0.5").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(c.is_some());
    h.clock.advance(chrono::Duration::minutes(14));
    assert_eq!(
        login(&h, "bob", "night+shift+coffee", None, "10.9.9.9").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    h.clock
        .advance(chrono::Duration::minutes(1) + chrono::Duration::seconds(1));
    let (status, c) = login(&h, "bob", "night+shift+coffee", None, "10.9.9.9").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "released after 15 minutes");
    assert!(c.is_some());
    assert!(h.audit_actions().contains(&"login.locked".to_string()));
}

#[tokio::test]
async fn session_id_changes_at_login_and_logout_ends_it_on_the_server() {
    let h = harness();
    h.user("cy", Role::Guard, "harbour lights at dawn", false);
    // A planted (attacker-chosen) id is not adopted.
    let planted = "0123456789abcdef0123456789abcdef";
    let r = h
        .call(Call::post("/login", "user=cy&password=harbour+lights+at+dawn").cookie(planted))
        .await;
    let first = set_cookie(&r).expect("cookie");
    assert_ne!(first, planted);
    let attrs = r
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    for a in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(a), "cookie lacks {a}: {attrs}");
    }
    // Logging in again with the first cookie: a new id, and the old one is dead.
    let r = h
        .call(Call::post("/login", "user=cy&password=harbour+lights+at+dawn").cookie(&first))
        .await;
    let second = set_cookie(&r).expect("cookie");
    assert_ne!(second, first);
    assert_eq!(
        h.call(Call::get("/api/live").cookie(&first)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.call(Call::get("/api/live").cookie(&second)).await.status(),
        StatusCode::OK
    );
    // Logout: the same cookie replayed afterwards is refused.
    let r = h.call(Call::post("/logout", "").cookie(&second)).await;
    assert_eq!(location(&r), "/login?m=out");
    assert_eq!(
        h.call(Call::get("/api/live").cookie(&second)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = h.call(Call::get("/live").cookie(&second)).await;
    assert_eq!(location(&r), "/login");
}

#[tokio::test]
async fn signed_image_urls_expire_and_cannot_be_forged() {
    let h = harness();
    let mut e = LiveEvent {
        seq: 0,
        id: "018f0000-0000-7000-8000-000000000001".into(),
        lane: "entry".into(),
        at: Utc::now(),
        plate: Some("ABC123".into()),
        confidence: 0.9,
        action: "open".into(),
        alert: false,
        reason: "listed resident".into(),
        kind: None,
        host: None,
        unit: None,
        guard_action: None,
        crop: None,
    };
    e.crop = Some(Arc::new(vec![0xFF, 0xD8, 0xFF, 0xD9]));
    h.live.publish(e.clone());
    let cookie = h.session(Role::Guard);
    let url = h.panel.image_url(&e.id);
    let r = h.call(Call::get(&url).cookie(&cookie)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        Some("image/jpeg")
    );
    // The live feed hands out such URLs.
    let r = h.call(Call::get("/api/live?after=0").cookie(&cookie)).await;
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(
        v["events"][0]["img"].as_str().is_some_and(|s| s.starts_with("/img/")),
        "{v}"
    );
    // Tampered: another event id, or a later expiry, under the same signature.
    let forged = url.replace("0001?", "0002?");
    assert_eq!(
        h.call(Call::get(&forged).cookie(&cookie)).await.status(),
        StatusCode::FORBIDDEN
    );
    let exp: i64 = url
        .split("exp=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .and_then(|s| s.parse().ok())
        .expect("exp");
    let later = url.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600));
    assert_eq!(
        h.call(Call::get(&later).cookie(&cookie)).await.status(),
        StatusCode::FORBIDDEN
    );
    // Expired after the configured two minutes.
    h.clock.advance(chrono::Duration::seconds(121));
    assert_eq!(
        h.call(Call::get(&url).cookie(&cookie)).await.status(),
        StatusCode::FORBIDDEN
    );
    // And never without a session.
    let fresh = h.panel.image_url(&e.id);
    assert_eq!(h.call(Call::get(&fresh)).await.status(), StatusCode::UNAUTHORIZED);
}

/// Issue 23: each lane's live still on the live page, behind the same signed-URL rules as crops.
#[tokio::test]
async fn live_stills_are_signed_expire_and_cannot_be_forged() {
    use opencv::core::{Mat, Scalar, CV_8UC3};
    let h = harness();
    let cookie = h.session(Role::Guard);
    let r = h.call(Call::get("/live").cookie(&cookie)).await;
    let page = String::from_utf8(
        axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body")
            .to_vec(),
    )
    .expect("utf8");
    assert!(
        page.contains(r#"id="still-entry""#),
        "the live page has the lane's still"
    );
    let r = h.call(Call::get("/api/live?after=0").cookie(&cookie)).await;
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["stills"][0]["lane"], "entry", "{v}");
    let url = v["stills"][0]["url"].as_str().expect("a still URL").to_string();
    assert!(url.starts_with("/lane/entry/still?exp="), "{url}");

    // Nobody watched yet: no still; the request makes the lane start (its next frame is the still).
    assert_eq!(
        h.call(Call::get(&url).cookie(&cookie)).await.status(),
        StatusCode::NOT_FOUND
    );
    let lane = h.panel.deps.stills.lane("entry").expect("lane");
    let frame = Mat::new_rows_cols_with_default(1080, 1920, CV_8UC3, Scalar::all(80.0)).expect("mat");
    lane.offer("entry", &frame, None, std::time::Instant::now());
    let r = h.call(Call::get(&url).cookie(&cookie)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let header = |r: &Response, h| r.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(header(&r, header::CONTENT_TYPE).as_deref(), Some("image/jpeg"));
    assert_eq!(header(&r, header::CACHE_CONTROL).as_deref(), Some("no-store"));
    let jpeg = axum::body::to_bytes(r.into_body(), 1 << 22).await.expect("body");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");

    // Another lane's name or a later expiry under the same signature, a crop's signature, no session.
    for forged in [
        url.replace("/lane/entry/", "/lane/exit/"),
        url.replace("exp=", "exp=9"),
        url.replace("sig=", "sig=00"),
    ] {
        assert_eq!(
            h.call(Call::get(&forged).cookie(&cookie)).await.status(),
            StatusCode::FORBIDDEN,
            "{forged}"
        );
    }
    let crop = h.panel.image_url("018f0000-0000-7000-8000-000000000001");
    let query = crop.split_once('?').expect("query").1;
    assert_eq!(
        h.call(Call::get(&format!("/lane/entry/still?{query}")).cookie(&cookie))
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "a crop's signature does not open a still"
    );
    assert_eq!(h.call(Call::get(&url)).await.status(), StatusCode::UNAUTHORIZED);
    // A signed URL for a lane that does not exist finds nothing.
    let nowhere = h.panel.still_url("nowhere");
    assert_eq!(
        h.call(Call::get(&nowhere).cookie(&cookie)).await.status(),
        StatusCode::NOT_FOUND
    );
    // Expired after the configured two minutes.
    h.clock.advance(chrono::Duration::seconds(121));
    assert_eq!(
        h.call(Call::get(&url).cookie(&cookie)).await.status(),
        StatusCode::FORBIDDEN
    );
}

/// Issue 23: the setup page saves a lane's region: checked by the config's rule, applied to the lane's
/// shared region at once, kept in the database for the next start, audited with before and after.
#[tokio::test]
async fn an_installer_saves_a_lane_region_checked_applied_kept_and_audited() {
    let h = harness();
    let cookie = h.session(Role::Installer);
    let page = h.body(Call::get("/setup").cookie(&cookie)).await;
    assert!(page.contains(r#"id="save-entry""#), "the lane's region form: {page}");
    let lane = h.panel.deps.setups.lane("entry").expect("lane");
    assert_eq!(lane.roi.get(), None, "the whole frame to begin with");

    // Outside the frame: refused, nothing changes.
    let r = h
        .call(Call::post("/setup/entry/region", "x=0.5&y=0.2&width=0.7&height=0.5").cookie(&cookie))
        .await;
    assert!(location(&r).starts_with("/setup?error="), "{}", location(&r));
    assert_eq!(lane.roi.get(), None);

    let r = h
        .call(Call::post("/setup/entry/region", "x=0.1&y=0.4&width=0.8&height=0.55").cookie(&cookie))
        .await;
    assert!(location(&r).starts_with("/setup?done="), "{}", location(&r));
    let roi = lane.roi.get().expect("a region");
    assert_eq!((roi.x, roi.y, roi.width, roi.height), (0.1, 0.4, 0.8, 0.55));
    let conn = gatehouse::db::open(&h.dir.path().join("gatehouse.db")).expect("db");
    let kept = gatehouse::db::meta_get(&conn, gatehouse::db::MetaKey::LaneRegions)
        .expect("meta")
        .expect("kept");
    assert!(kept.contains("\"entry\"") && kept.contains("0.55"), "{kept}");
    let (before, after): (String, String) = conn
        .query_row(
            "SELECT before, after FROM audit_log WHERE action = 'lane.region' ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("audited");
    assert_eq!(before, "whole frame");
    assert_eq!(after, "x=0.10 y=0.40 w=0.80 h=0.55");
    // An unknown lane is not found; a guard may not (the route matrix covers every role).
    let r = h
        .call(Call::post("/setup/nowhere/region", "x=0&y=0&width=1&height=1").cookie(&cookie))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let guard = h.session(Role::Guard);
    let r = h
        .call(Call::post("/setup/entry/region", "x=0&y=0&width=1&height=1").cookie(&guard))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(lane.roi.get(), Some(roi), "unchanged by the refused request");
}

#[tokio::test]
async fn cross_origin_posts_are_refused_and_same_origin_opens_the_gate() {
    let h = harness();
    let cookie = h.session(Role::Guard);
    for origin in [Some("https://evil.example"), Some("http://gate.test"), None] {
        let r = h
            .call(
                Call::post("/gate/main/open", "reason=let+me+in")
                    .cookie(&cookie)
                    .origin(origin),
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "origin {origin:?}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.pulses(), 0, "no cross-origin request reached the relay");
    let r = h
        .call(Call::post("/gate/main/open", "reason=delivery+van").cookie(&cookie))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/live?done="), "{}", location(&r));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.pulses(), 1, "the relay pulsed once");
    assert_eq!(h.audit_actions().last().map(String::as_str), Some("gate.open"));
    // A reason is required.
    let r = h.call(Call::post("/gate/main/open", "reason=").cookie(&cookie)).await;
    assert!(location(&r).contains("error="));
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let h = harness();
    for path in ["/login", "/nowhere", "/static/app.js"] {
        let r = h.call(Call::get(path)).await;
        let get = |k: &str| {
            r.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert!(get("strict-transport-security").starts_with("max-age="), "{path}");
        assert!(get("content-security-policy")
            .contains("default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"));
        assert_eq!(get("x-content-type-options"), "nosniff");
        assert_eq!(get("referrer-policy"), "same-origin");
    }
    // Generic error pages: no internals.
    let r = h.call(Call::get("/nowhere")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_role_needs_a_second_factor_before_anything_else() {
    let h = harness();
    h.user("dee", Role::Admin, "granite kettle orbit", false);
    let (_, cookie) = login(&h, "dee", "granite+kettle+orbit", None, "10.0.0.5").await;
    let cookie = cookie.expect("cookie");
    let r = h.call(Call::get("/users").cookie(&cookie)).await;
    assert_eq!(location(&r), "/account/totp", "enrollment first");
    assert_eq!(
        h.call(Call::get("/account/totp").cookie(&cookie)).await.status(),
        StatusCode::OK
    );
}

#[test]
fn tls_1_2_is_refused_and_tls_1_3_served() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let _g = rt.enter();
    let h = harness();
    let (cert, key) = gatehouse::panel::tls::self_signed(h.dir.path(), &["localhost".into()]).expect("cert");
    let tls = gatehouse::panel::tls::server_config(&cert, &key).expect("tls");
    let cancel = tokio_util::sync::CancellationToken::new();
    let (thread, addr) = gatehouse::panel::server::spawn(h.panel.clone(), tls, cancel.clone()).expect("serve");
    let handshake = |version: &str| {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                version,
                "-servername",
                "localhost",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client")
    };
    let old = handshake("-tls1_2");
    assert!(
        !old.status.success(),
        "TLS 1.2 handshake must fail: {}",
        String::from_utf8_lossy(&old.stdout)
    );
    let new = handshake("-tls1_3");
    assert!(
        new.status.success() && String::from_utf8_lossy(&new.stdout).contains("TLSv1.3"),
        "TLS 1.3 handshake: {}",
        String::from_utf8_lossy(&new.stderr)
    );
    // An HTTPS request end to end, the certificate checked against itself.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{ssl_verify_result}",
            "--cacert",
        ])
        .arg(&cert)
        .arg(format!("https://localhost:{}/login", addr.port()))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cancel.cancel();
    thread.join().expect("join");
}
