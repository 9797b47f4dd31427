//! `[relays.*]` and `[[lanes]]`: the gates' relays and the cameras that feed them.

use super::*;

pub(super) fn validate_relay(name: String, r: RawRelay, base: &Path, issues: &mut Issues) -> Option<RelayConfig> {
    let path = format!("relays.{name}");
    let kind = match r.kind.as_str() {
        "gpio" => match (&r.chip, r.line) {
            (Some(chip), Some(line)) => Some(RelayKind::Gpio {
                chip: PathBuf::from(chip),
                line,
            }),
            _ => {
                issues.push(
                    format!("{path}.chip"),
                    "a gpio relay needs chip and line",
                    "add chip = \"/dev/gpiochip0\" and line = <offset>",
                );
                None
            }
        },
        "simulated" => Some(RelayKind::Simulated {
            log: r.log.as_deref().map(|p| resolve(base, p)),
        }),
        other => {
            issues.push(
                format!("{path}.kind"),
                format!("unknown relay kind {other:?}"),
                "use \"gpio\" or \"simulated\"",
            );
            None
        }
    };
    let safe_state = match r.safe_state.as_str() {
        "closed" => SafeState::Closed,
        "open" => SafeState::Open,
        other => {
            issues.push(
                format!("{path}.safe_state"),
                format!("unknown safe state {other:?}"),
                "use \"closed\" (line released) or \"open\" (fail-open sites)",
            );
            SafeState::Closed
        }
    };
    if !(50..=10_000).contains(&r.pulse_ms) {
        issues.push(
            format!("{path}.pulse_ms"),
            format!("{} ms is out of range", r.pulse_ms),
            "use 50 to 10000 (most gate operators want 500-1000)",
        );
    }
    if r.max_hold_s == 0 || r.max_hold_s > 86_400 {
        issues.push(
            format!("{path}.max_hold_s"),
            format!("{} s is out of range", r.max_hold_s),
            "use 1 to 86400",
        );
    }
    if r.cooldown_ms > 600_000 {
        issues.push(
            format!("{path}.cooldown_ms"),
            format!("{} ms is too long", r.cooldown_ms),
            "use at most 600000",
        );
    }
    Some(RelayConfig {
        name,
        kind: kind?,
        active_low: r.active_low,
        pulse: Duration::from_millis(r.pulse_ms),
        cooldown: Duration::from_millis(r.cooldown_ms),
        max_hold: Duration::from_secs(r.max_hold_s),
        safe_state,
    })
}

/// Parses a lane source string.
pub(super) fn parse_source(s: &str, base: &Path) -> Result<SourceSpec, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("source is empty".into());
    }
    if let Some(rest) = s.strip_prefix("gst:") {
        let pipeline = rest.trim();
        let last = pipeline.rsplit('!').next().unwrap_or("").trim();
        if !last.starts_with("appsink") {
            return Err("a GStreamer pipeline must end in an appsink, for example \
                        \"gst:rtspsrc location=rtsp://cam/1 ! rtph264depay ! h264parse ! avdec_h264 ! \
                        videoconvert ! appsink drop=true max-buffers=1\""
                .into());
        }
        return Ok(SourceSpec::Pipeline(pipeline.to_string()));
    }
    if let Some(rest) = s.strip_prefix("v4l2:") {
        return Ok(SourceSpec::Device(PathBuf::from(rest)));
    }
    if s.starts_with("/dev/video") {
        return Ok(SourceSpec::Device(PathBuf::from(s)));
    }
    if let Some((scheme, _)) = s.split_once("://") {
        return match scheme {
            "rtsp" | "rtsps" | "http" | "https" => Ok(SourceSpec::Url(s.to_string())),
            other => Err(format!("unsupported scheme {other:?}")),
        };
    }
    let p = s.strip_prefix("file:").unwrap_or(s);
    Ok(SourceSpec::File(resolve(base, p)))
}

pub(super) fn validate_lane(l: RawLane, path: &str, base: &Path, issues: &mut Issues) -> Option<LaneConfig> {
    if l.name.trim().is_empty()
        || !l
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        issues.push(
            format!("{path}.name"),
            format!("{:?} is not a usable lane name", l.name),
            "use letters, digits, - and _ (e.g. \"entry\")",
        );
    }
    let source = match parse_source(&l.source, base) {
        Ok(s) => Some(s),
        Err(e) => {
            issues.push(
                format!("{path}.source"),
                e,
                "use a video file path, rtsp://host/stream, or /dev/videoN",
            );
            None
        }
    };
    let at_end = match l.at_end.as_str() {
        "stop" => AtEnd::Stop,
        "loop" => AtEnd::Loop,
        other => {
            issues.push(
                format!("{path}.at_end"),
                format!("unknown value {other:?}"),
                "use \"stop\" or \"loop\"",
            );
            AtEnd::Stop
        }
    };
    let roi = l.roi.map(|r| Roi {
        x: r.x,
        y: r.y,
        width: r.width,
        height: r.height,
    });
    if let Some(r) = roi {
        if !r.is_valid() {
            issues.push(
                format!("{path}.roi"),
                format!("{r:?} is not inside the frame"),
                "give x, y, width, height as fractions of the frame, with x + width <= 1 and y + height <= 1",
            );
        }
    }
    if l.reconnect_max_ms > 600_000 {
        issues.push(
            format!("{path}.reconnect_max_ms"),
            format!("{} ms is too long", l.reconnect_max_ms),
            "use at most 600000 (10 minutes)",
        );
    }
    if l.reconnect_min_ms == 0 || l.reconnect_min_ms > l.reconnect_max_ms {
        issues.push(
            format!("{path}.reconnect_min_ms"),
            "reconnect back-off bounds are inverted or zero",
            "use 0 < reconnect_min_ms <= reconnect_max_ms",
        );
    }
    let motion = l.motion.filter(|m| m.enabled).map(|m| {
        if !(m.min_changed > 0.0 && m.min_changed <= 0.5) {
            issues.push(
                format!("{path}.motion.min_changed"),
                format!("{} is not a fraction of the region", m.min_changed),
                "use a fraction above 0 and at most 0.5 (0.002 = 0.2% of the region changed)",
            );
        }
        for (key, ms) in [("hold_ms", m.hold_ms), ("idle_read_ms", m.idle_read_ms)] {
            if !(100..=60_000).contains(&ms) {
                issues.push(
                    format!("{path}.motion.{key}"),
                    format!("{ms} ms is out of range"),
                    "use 100 to 60000 ms",
                );
            }
        }
        MotionConfig {
            min_changed: m.min_changed,
            hold: Duration::from_millis(m.hold_ms),
            idle_read: Duration::from_millis(m.idle_read_ms),
        }
    });
    if l.replay && !matches!(source, Some(SourceSpec::File(_))) {
        issues.push(
            format!("{path}.replay"),
            "replay is only for video files",
            "remove replay for a live camera (its frames are taken as they come)",
        );
    }
    Some(LaneConfig {
        name: l.name,
        source: source?,
        relay: l.relay,
        roi,
        at_end,
        realtime: l.realtime,
        replay: l.replay,
        reconnect_min: Duration::from_millis(l.reconnect_min_ms),
        reconnect_max: Duration::from_millis(l.reconnect_max_ms.max(l.reconnect_min_ms)),
        motion,
    })
}
