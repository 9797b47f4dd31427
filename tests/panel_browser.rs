//! The guard panel in a real headless Chromium (Debian's chromium + chromium-driver) against the real
//! daemon on the demo video: admin logs in with password and TOTP, sees a pass and the lane's live still
//! appear in the live view,
//! opens the gate with a reason (the simulated relay pulses, the audit log has the entry); a guard is
//! refused the admin pages and the setup page; an installer sees the plate's box and width on the setup page,
//! saves a region that leaves the plate out (the lane stops reading it; audited; kept after a restart).
//! Screenshots of the main pages go to target/panel-screenshots/.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::broker::free_port;
use crate::support::*;

fn wait_port(port: u16, what: &str, child: &mut Child) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early ({status})");
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn add_user(cfg: &Path, name: &str, role: &str, password: &str) -> String {
    let cfg = cfg.to_str().expect("utf8");
    let args = ["user", "--config", cfg, "add", name, "--role", role];
    let out = gatehouse_with(&args, None, &format!("{password}\n"));
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn relay_pulses(data: &Path) -> usize {
    std::fs::read_to_string(data.join("relay.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"energized\":true"))
        .count()
}

async fn shot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("type");
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

async fn path_of(c: &Client) -> String {
    let u = c.current_url().await.expect("url");
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Waits until the page's path (and query) starts with `prefix`: a click returns before the navigation
/// it starts has finished.
async fn wait_path(c: &Client, prefix: &str) -> String {
    let start = Instant::now();
    loop {
        let p = path_of(c).await;
        if p.starts_with(prefix) && c.find(Locator::Css("main")).await.is_ok() {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "expected {prefix}, still at {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_text(c: &Client, css: &str, needle: &str, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Ok(els) = c.find_all(Locator::Css(css)).await {
            for e in els {
                if e.text().await.unwrap_or_default().contains(needle) {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_logs_in_with_totp_watches_a_pass_opens_the_gate_and_a_guard_is_kept_out() {
    require_models();
    let (chromium, driver) = (
        PathBuf::from("/usr/bin/chromium"),
        PathBuf::from("/usr/bin/chromedriver"),
    );
    assert!(
        chromium.exists() && driver.exists(),
        "chromium and chromium-driver are missing: run scripts/setup.sh first"
    );
    let shots = repo().join("target/panel-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let dir = tempfile::tempdir().expect("tmp");
    let video = dir.path().join("lane.avi");
    // One unknown vehicle, the video looping: a denied pass for the guard to act on.
    render_video(&video, "MWK3974", "3.0", "4.0");
    let cfg = write_config(dir.path(), &video, "loop");
    let port = free_port();
    let mut text_cfg = std::fs::read_to_string(&cfg).expect("cfg");
    text_cfg.push_str(&format!(
        "\n[panel]\nlisten = \"127.0.0.1:{port}\"\nhostnames = [\"localhost\"]\n"
    ));
    std::fs::write(&cfg, text_cfg).expect("cfg");

    let out = add_user(&cfg, "alex", "admin", "quiet river morning");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("second factor key: "))
        .expect("admin gets a second factor key")
        .trim()
        .to_string();
    add_user(&cfg, "gus", "guard", "booth lamp at night");
    let out = add_user(&cfg, "ines", "installer", "ladder on the verge");
    let installer_secret = out
        .lines()
        .find_map(|l| l.strip_prefix("second factor key: "))
        .expect("an installer gets a second factor key")
        .trim()
        .to_string();

    let mut daemon = Command::new(bin())
        .args(["run", "--config", cfg.to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    wait_port(port, "the daemon's panel", &mut daemon);
    let mut daemon = Kill(daemon);
    let wd_port = free_port();
    let profile = dir.path().join("chrome-profile");
    let mut chromedriver = Command::new(&driver)
        .arg(format!("--port={wd_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver");
    wait_port(wd_port, "chromedriver", &mut chromedriver);
    let _chromedriver = Kill(chromedriver);

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--ignore-certificate-errors", "--window-size=1280,900",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    let c = ClientBuilder::rustls()
        .expect("tls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{wd_port}"))
        .await
        .expect("webdriver session");
    let base = format!("https://localhost:{port}");

    // 1. Admin: password, then the TOTP code.
    c.goto(&format!("{base}/live")).await.expect("goto");
    assert_eq!(path_of(&c).await, "/login", "logged out: sent to the login");
    shot(&c, &shots, "login").await;
    fill(&c, "#user", "alex").await;
    fill(&c, "#password", "quiet river morning").await;
    click(&c, "#login").await;
    wait_path(&c, "/login/totp").await;
    let code = gatehouse::panel::totp::code(&secret, chrono::Utc::now()).expect("code");
    fill(&c, "#code", &code).await;
    click(&c, "#verify").await;
    assert_eq!(wait_path(&c, "/live").await, "/live", "admin lands on the live view");

    // 2. A pass from the demo video appears in the live view.
    assert!(
        wait_for_text(&c, "#events .event", "MWK3974", Duration::from_secs(60)).await,
        "the pass never appeared in the live view"
    );
    assert!(wait_for_text(&c, "#events .event", "not on the list", Duration::from_secs(1)).await);
    // The lane's live still: the daemon starts making stills once the page asks, the page shows them.
    let start = Instant::now();
    loop {
        let width = c
            .execute("return document.getElementById('still-entry').naturalWidth;", vec![])
            .await
            .expect("script");
        if width.as_u64() == Some(640) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the lane's live still never showed (naturalWidth {width})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shot(&c, &shots, "live").await;

    // 3. Open the gate for that vehicle with a reason: the relay pulses, the audit log has it.
    let before = relay_pulses(&dir.path().join("data"));
    click(&c, "#events .event").await;
    fill(&c, "#reason-main", "delivery, resident confirmed by phone").await;
    click(&c, "#open-main").await;
    wait_path(&c, "/live?done=").await;
    let start = Instant::now();
    while relay_pulses(&dir.path().join("data")) <= before {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the simulated relay did not pulse"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wait_for_text(&c, "#events .event", "open by alex: delivery", Duration::from_secs(5)).await,
        "the guard's opening is in the live view"
    );
    shot(&c, &shots, "live-after-open").await;
    c.goto(&format!("{base}/audit")).await.expect("goto");
    let audit = c
        .find(Locator::Css("#audit"))
        .await
        .expect("audit table")
        .text()
        .await
        .expect("text");
    assert!(
        audit.contains("gate.open") && audit.contains("delivery, resident confirmed by phone"),
        "{audit}"
    );
    let status = c
        .find(Locator::Css("#audit-status"))
        .await
        .expect("status")
        .text()
        .await
        .expect("text");
    assert!(status.starts_with("Chain intact"), "{status}");
    shot(&c, &shots, "audit").await;
    for (page, name) in [
        ("/users", "users"),
        ("/passes", "passes"),
        ("/sessions", "sessions"),
        ("/system", "system"),
    ] {
        c.goto(&format!("{base}{page}")).await.expect("goto");
        shot(&c, &shots, name).await;
    }
    c.goto(&format!("{base}/events?plate=MWK&purpose=screenshot+for+the+manual"))
        .await
        .expect("goto");
    assert!(wait_for_text(&c, "#results", "MWK3974", Duration::from_secs(1)).await);
    shot(&c, &shots, "search").await;
    click(&c, "#logout").await;
    wait_path(&c, "/login?m=out").await;

    // 4. A guard: no second factor owed, the live view yes, admin pages no.
    fill(&c, "#user", "gus").await;
    fill(&c, "#password", "booth lamp at night").await;
    click(&c, "#login").await;
    wait_path(&c, "/live").await;
    let menu = c
        .find(Locator::Css("nav"))
        .await
        .expect("nav")
        .text()
        .await
        .expect("text");
    assert!(!menu.contains("Users") && !menu.contains("Audit"), "guard menu: {menu}");
    for page in ["/users", "/system", "/audit", "/passes", "/setup"] {
        c.goto(&format!("{base}{page}")).await.expect("goto");
        let body = c
            .find(Locator::Css("main"))
            .await
            .expect("main")
            .text()
            .await
            .expect("text");
        assert!(
            body.contains("Your role does not allow this."),
            "guard reached {page}: {body}"
        );
    }
    shot(&c, &shots, "guard-refused").await;
    c.goto(&format!("{base}/live")).await.expect("goto");
    wait_path(&c, "/live").await;
    click(&c, "#logout").await;
    wait_path(&c, "/login?m=out").await;

    // 5. An installer on the setup page: the frame with the plate's box and pixel width; a region that
    // leaves the plate out is saved, the lane stops reading it, the audit log has the change, and the
    // region is still in force after a restart.
    fill(&c, "#user", "ines").await;
    fill(&c, "#password", "ladder on the verge").await;
    click(&c, "#login").await;
    wait_path(&c, "/login/totp").await;
    let code = gatehouse::panel::totp::code(&installer_secret, chrono::Utc::now()).expect("code");
    fill(&c, "#code", &code).await;
    click(&c, "#verify").await;
    wait_path(&c, "/system").await;
    c.goto(&format!("{base}/setup")).await.expect("goto");
    assert!(
        wait_for_text(&c, "#plates-entry li", "px wide", Duration::from_secs(60)).await,
        "the setup page never showed the plate's width"
    );
    let boxes = c
        .find_all(Locator::Css("#overlay-entry rect.plate"))
        .await
        .expect("boxes");
    assert!(!boxes.is_empty(), "the plate's box is drawn on the frame");
    let label = c
        .find(Locator::Css("#overlay-entry text.plate-label"))
        .await
        .expect("label")
        .text()
        .await
        .expect("text");
    assert!(label.contains("MWK3974") && label.contains(" px"), "{label}");
    shot(&c, &shots, "setup").await;
    // The plate drives through the lower part of the frame: keep only the top 40%.
    for (field, value) in [("x", "0"), ("y", "0"), ("width", "1"), ("height", "0.4")] {
        fill(&c, &format!("#{field}-entry"), value).await;
    }
    click(&c, "#save-entry").await;
    wait_path(&c, "/setup?done=").await;
    let saved_at = chrono::Utc::now().timestamp_millis();
    assert!(
        wait_for_text(
            &c,
            "#plates-entry li",
            "no plate in this frame's region",
            Duration::from_secs(15)
        )
        .await,
        "the new region still shows a plate"
    );
    shot(&c, &shots, "setup-after").await;
    // The video brings the car back every few seconds: no decision comes from it any more.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let db = dir.path().join("data/gatehouse.db");
    let conn = rusqlite::Connection::open(&db).expect("db");
    let later: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE plate = 'MWK3974' AND at > ?1",
            [saved_at + 1500],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(later, 0, "the plate outside the new region was still read");
    c.goto(&format!("{base}/audit")).await.expect("goto");
    assert!(
        wait_for_text(&c, "main", "x=0.00 y=0.00 w=1.00 h=0.40", Duration::from_secs(2)).await,
        "the audit log shows the new region"
    );
    // A restart keeps the region.
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let stop = Instant::now();
    while daemon.0.try_wait().expect("wait").is_none() {
        assert!(stop.elapsed() < Duration::from_secs(30), "daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.0 = Command::new(bin())
        .args(["run", "--config", cfg.to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    wait_port(port, "the restarted daemon's panel", &mut daemon.0);
    c.goto(&format!("{base}/setup")).await.expect("goto");
    let height = c
        .find(Locator::Css("#height-entry"))
        .await
        .expect("field")
        .attr("value")
        .await
        .expect("value");
    assert_eq!(height.as_deref(), Some("0.40"), "the saved region after a restart");
    c.close().await.expect("close");
}
