//! `[inputs.*]`: loop detectors, gate position contacts and exit buttons, each tied to a lane or a relay.

use super::*;

/// Validates every input against the lanes and relays it names (one loop per lane, one position contact
/// per relay).
pub(super) fn validate_inputs(
    raw: Vec<(String, RawInput)>,
    lanes: &HashSet<&str>,
    relays: &HashSet<&str>,
    base: &Path,
    issues: &mut Issues,
) -> Vec<InputConfig> {
    let mut out: Vec<InputConfig> = Vec::new();
    for (name, i) in raw {
        let path = format!("inputs.{name}");
        let kind = match i.kind.as_str() {
            "gpio" => match (&i.chip, i.line) {
                (Some(chip), Some(line)) => Some(InputKind::Gpio {
                    chip: PathBuf::from(chip),
                    line,
                }),
                _ => {
                    issues.push(
                        format!("{path}.chip"),
                        "a gpio input needs chip and line",
                        "add chip = \"/dev/gpiochip0\" and line = <offset>",
                    );
                    None
                }
            },
            "simulated" => match &i.file {
                Some(f) => Some(InputKind::Simulated { file: resolve(base, f) }),
                None => {
                    issues.push(
                        format!("{path}.file"),
                        "a simulated input needs the file that holds its level",
                        "add file = \"sim/exit-button\" (write 1 to it for active, 0 for released)",
                    );
                    None
                }
            },
            other => {
                issues.push(
                    format!("{path}.kind"),
                    format!("unknown input kind {other:?}"),
                    "use \"gpio\" or \"simulated\"",
                );
                None
            }
        };
        if i.debounce_ms > 1000 {
            issues.push(
                format!("{path}.debounce_ms"),
                format!("{} ms is too long", i.debounce_ms),
                "use 0 to 1000 (contacts bounce for under 20 ms; 50 is the default)",
            );
        }
        let named =
            |key: &str, value: &Option<String>, known: &HashSet<&str>, what: &str, issues: &mut Issues| match value {
                Some(v) if known.contains(v.as_str()) => Some(v.clone()),
                Some(v) => {
                    issues.push(
                        format!("{path}.{key}"),
                        format!("no {what} named {v:?}"),
                        format!("use one of: {}", join_sorted(known)),
                    );
                    None
                }
                None => {
                    issues.push(
                        format!("{path}.{key}"),
                        format!("a {} input needs the {what} it belongs to", i.role),
                        format!("add {key} = \"...\" (one of: {})", join_sorted(known)),
                    );
                    None
                }
            };
        let role = match i.role.as_str() {
            "presence" => {
                if i.open_only_present && !(1..=600).contains(&i.present_wait_s) {
                    issues.push(
                        format!("{path}.present_wait_s"),
                        format!("{} s is out of range", i.present_wait_s),
                        "use 1 to 600 (how long a decided opening waits for the car to reach the loop)",
                    );
                }
                named("lane", &i.lane, lanes, "lane", issues).map(|lane| InputRole::Presence {
                    lane,
                    open_wait: i.open_only_present.then(|| Duration::from_secs(i.present_wait_s)),
                })
            }
            "gate_position" => {
                if !(500..=120_000).contains(&i.open_within_ms) {
                    issues.push(
                        format!("{path}.open_within_ms"),
                        format!("{} ms is out of range", i.open_within_ms),
                        "use 500 to 120000 (how long the gate takes to start opening, with margin)",
                    );
                }
                if !(5..=86_400).contains(&i.held_open_s) {
                    issues.push(
                        format!("{path}.held_open_s"),
                        format!("{} s is out of range", i.held_open_s),
                        "use 5 to 86400",
                    );
                }
                named("relay", &i.relay, relays, "relay", issues).map(|relay| InputRole::GatePosition {
                    relay,
                    open_within: Duration::from_millis(i.open_within_ms),
                    held_open: Duration::from_secs(i.held_open_s),
                })
            }
            "exit_button" => {
                named("relay", &i.relay, relays, "relay", issues).map(|relay| InputRole::ExitButton { relay })
            }
            other => {
                issues.push(
                    format!("{path}.role"),
                    format!("unknown input role {other:?}"),
                    "use \"presence\" (loop detector), \"gate_position\" (gate open contact) or \"exit_button\"",
                );
                None
            }
        };
        if i.open_only_present && !matches!(role, Some(InputRole::Presence { .. }) | None) {
            issues.push(
                format!("{path}.open_only_present"),
                "only a loop detector can hold an opening until a vehicle is there",
                "set it on the lane's role = \"presence\" input, or remove it",
            );
        }
        let (Some(kind), Some(role)) = (kind, role) else {
            continue;
        };
        let clash = out.iter().find(|o| match (&o.role, &role) {
            (InputRole::Presence { lane: a, .. }, InputRole::Presence { lane: b, .. }) => a == b,
            (InputRole::GatePosition { relay: a, .. }, InputRole::GatePosition { relay: b, .. }) => a == b,
            _ => false,
        });
        if let Some(other) = clash {
            issues.push(
                format!("{path}.role"),
                format!("inputs.{} already has this role for the same lane or relay", other.name),
                "keep one loop per lane and one position contact per gate",
            );
            continue;
        }
        out.push(InputConfig {
            name,
            kind,
            active_low: i.active_low,
            debounce: Duration::from_millis(i.debounce_ms),
            role,
        });
    }
    out
}
