//! Roles and what each may do. The server checks a route's permission on every request
//! ([`super::routes::ROUTES`]); docs/panel.md has the same matrix for people.
//!
//! | permission | guard | supervisor | admin | installer |
//! |---|---|---|---|---|
//! | watch the live lanes | yes | yes | yes | yes |
//! | open the gate once | yes | yes | yes | yes (testing) |
//! | hold open / release | yes | yes | yes | no |
//! | lockdown / unlock | no | yes | yes | no |
//! | search events (with a purpose) | yes | yes | yes | no |
//! | visitor passes | no | yes | yes | no |
//! | users and roles, everyone's sessions | no | no | yes | no |
//! | audit log | no | yes | yes | yes |
//! | system status | no | no | yes | yes |
//! | lane setup (camera view, region of interest) | no | no | yes | yes |
//! | own account and sessions | yes | yes | yes | yes |

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Guard,
    Supervisor,
    Admin,
    Installer,
}

pub const ROLES: [Role; 4] = [Role::Guard, Role::Supervisor, Role::Admin, Role::Installer];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    ViewLive,
    GateOpen,
    GateHold,
    GateLockdown,
    SearchEvents,
    ManagePasses,
    ManageUsers,
    ViewAudit,
    ViewSystem,
    /// The lanes' setup page: camera view, region of interest.
    SetupLanes,
    OwnAccount,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guard => "guard",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::Installer => "installer",
        }
    }

    /// Admins and installers change the system: they must use a second factor; every role must when the
    /// site says so (`[panel] totp_for_all_roles`).
    pub fn requires_totp(self, all_roles: bool) -> bool {
        all_roles || matches!(self, Role::Admin | Role::Installer)
    }

    pub fn may(self, p: Perm) -> bool {
        use Perm::*;
        match self {
            Role::Admin => true,
            Role::Guard => matches!(p, ViewLive | GateOpen | GateHold | SearchEvents | OwnAccount),
            Role::Supervisor => !matches!(p, ManageUsers | ViewSystem | SetupLanes),
            Role::Installer => matches!(
                p,
                ViewLive | GateOpen | ViewAudit | ViewSystem | SetupLanes | OwnAccount
            ),
        }
    }

    /// The page a role lands on after login.
    pub fn home(self) -> &'static str {
        match self {
            Role::Installer => "/system",
            _ => "/live",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ROLES
            .into_iter()
            .find(|r| r.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown role {s:?} (use guard, supervisor, admin or installer)"))
    }
}

/// Who may use a route (the table is [`super::routes::ROUTES`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// No session needed (login pages, static assets).
    Public,
    /// A session whose second factor is still owed.
    Pending,
    /// A session in any stage (logout).
    AnySession,
    /// Second-factor enrollment: a full session, or one that must enroll before anything else.
    Enroll,
    /// A full session whose role has the permission.
    Perm(Perm),
}
