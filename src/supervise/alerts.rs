//! Standing alerts: conditions a person must act on (the database is damaged, events cannot be stored).
//! Each has a short name and a message naming the fix; it stays raised until the condition clears. They
//! are shown in the panel's system status and the cloud heartbeat (`"alerts"`), and in the metrics
//! (`gatehouse_alert{name="..."} 1`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared, cheap to clone; every stage that can raise an alert holds one.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    inner: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Alerts {
    /// Raises (or updates) the alert `name`. Logged at ERROR when it is new or its message changed.
    pub fn raise(&self, name: &'static str, message: impl Into<String>) {
        let message = message.into();
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(name) != Some(&message) {
            tracing::error!(alert = name, "ALERT: {message}");
            map.insert(name, message);
        }
    }

    /// Clears the alert `name` (logged when it was raised).
    pub fn clear(&self, name: &'static str) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.remove(name).is_some() {
            tracing::info!(alert = name, "alert cleared");
        }
    }

    /// The raised alerts, by name.
    pub fn list(&self) -> Vec<(&'static str, String)> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// The alerts as JSON objects `{"name": ..., "message": ...}` (panel status, heartbeat).
    pub fn to_json(&self) -> serde_json::Value {
        self.list()
            .into_iter()
            .map(|(name, message)| serde_json::json!({"name": name, "message": message}))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_until_cleared() {
        let a = Alerts::default();
        a.raise("database", "damaged");
        a.raise("database", "damaged");
        assert_eq!(a.list(), vec![("database", "damaged".to_string())]);
        assert_eq!(a.to_json()[0]["name"], "database");
        a.clear("database");
        assert!(a.list().is_empty());
    }
}
