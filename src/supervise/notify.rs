//! The sd_notify protocol (systemd's `Type=notify`): datagrams such as `READY=1` or `WATCHDOG=1` sent to
//! the socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). Without it, no-op.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// Sends service state to the service manager.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Target>,
    /// Watchdog interval the manager expects pings within (`$WATCHDOG_USEC`).
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (honouring `$WATCHDOG_PID`).
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").map(|s| {
            let s = s.to_string_lossy().to_string();
            match s.strip_prefix('@') {
                Some(name) => Target::Abstract(name.as_bytes().to_vec()),
                None => Target::Path(PathBuf::from(s)),
            }
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0 && for_us)
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// Sends to a socket path (tests).
    pub fn to_path(path: PathBuf, watchdog: Option<Duration>) -> Self {
        Self {
            target: Some(Target::Path(path)),
            watchdog,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one state message, e.g. `READY=1`; failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else { return };
        let result = UnixDatagram::unbound().and_then(|sock| match target {
            Target::Path(p) => sock.send_to(state.as_bytes(), p).map(|_| ()),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
            }
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, state, "sd_notify failed");
        }
    }
}
