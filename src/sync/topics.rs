//! Topic names. Every topic of a device sits under `<prefix>/d/<site.device>/`, one level per device, so
//! a broker ACL `pattern ... <prefix>/d/%u/...` (username = certificate CN) confines each device to its own.

#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, mqtt_id: &str) -> Self {
        Self {
            base: format!("{prefix}/d/{mqtt_id}"),
        }
    }

    /// Cloud -> device: one whole signed envelope (QoS 1).
    pub fn allowlist(&self) -> String {
        format!("{}/allowlist", self.base)
    }

    /// Cloud -> device: an envelope in chunks (QoS 1), see [`super::chunk`].
    pub fn allowlist_chunks(&self) -> String {
        format!("{}/allowlist/chunk", self.base)
    }

    /// Device -> cloud (retained, QoS 1): the applied allowlist version and hash, the last rejection.
    pub fn state(&self) -> String {
        format!("{}/allowlist/state", self.base)
    }

    /// Device -> cloud (QoS 1): gate events from the outbox.
    pub fn events(&self) -> String {
        format!("{}/events", self.base)
    }

    /// Device -> cloud (retained, QoS 1): online/offline; the last will says offline.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    /// Device -> cloud (QoS 0): periodic health figures.
    pub fn heartbeat(&self) -> String {
        format!("{}/heartbeat", self.base)
    }

    /// Device -> cloud (retained, QoS 1): the newest signed audit checkpoint.
    pub fn audit_checkpoint(&self) -> String {
        format!("{}/audit/checkpoint", self.base)
    }

    /// Cloud -> device (QoS 1): signed commands (DSAR export and delete), see [`super::command`].
    pub fn command(&self) -> String {
        format!("{}/command", self.base)
    }

    /// Device -> cloud (QoS 1): what became of each command.
    pub fn command_result(&self) -> String {
        format!("{}/command/result", self.base)
    }

    /// Device -> cloud (QoS 1): a DSAR export, in chunks (the allowlist chunk format).
    pub fn dsar_export(&self) -> String {
        format!("{}/dsar/export", self.base)
    }

    /// What the device subscribes to.
    pub fn subscriptions(&self) -> [String; 3] {
        [self.allowlist(), self.allowlist_chunks(), self.command()]
    }
}
