//! [`Config`]: the tunables of a batch system.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Tunables of a [`BatchSystem`](crate::BatchSystem).
///
/// Serialised with serde; missing fields take their defaults and
/// `reschedule_duration` is written in milliseconds.
///
/// # Defaults
///
/// | field | default | meaning |
/// |---|---|---|
/// | `pool_size` | 2 | poller threads |
/// | `max_batch_size` | 256 | normal FSMs per poller round |
/// | `reschedule_duration` | 100 ms | how long a poller keeps a busy FSM before re-queueing it |
///
/// [`create_system`](crate::create_system) takes the first two as
/// arguments and uses the default `reschedule_duration`.
///
/// # Examples
///
/// ```
/// use batch_system::Config;
///
/// let defaults = Config::default();
/// assert_eq!(defaults.pool_size, 2);
/// assert_eq!(defaults.max_batch_size, 256);
/// assert_eq!(defaults.reschedule_duration, std::time::Duration::from_millis(100));
///
/// let cfg: Config = serde_json::from_str(r#"{"pool_size": 4}"#).unwrap();
/// assert_eq!(cfg.pool_size, 4);
/// assert_eq!(cfg.max_batch_size, Config::default().max_batch_size);
/// cfg.validate().unwrap();
///
/// let bad = Config { pool_size: 0, ..Config::default() };
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "invalid batch-system config: pool_size must be at least 1"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Number of poller threads. Default 2.
    pub pool_size: usize,
    /// Most normal FSMs one poller handles in one round. Default 256.
    pub max_batch_size: usize,
    /// How long a poller may keep an FSM that wants more processing before
    /// it puts it back at the end of the queue, so one hot FSM cannot
    /// starve the others waiting for a slot. Default 100 ms.
    #[serde(with = "millis", rename = "reschedule_duration_ms")]
    pub reschedule_duration: Duration,
}

impl Default for Config {
    /// `pool_size` 2, `max_batch_size` 256, `reschedule_duration` 100 ms.
    fn default() -> Config {
        Config {
            pool_size: 2,
            max_batch_size: 256,
            reschedule_duration: Duration::from_millis(100),
        }
    }
}

impl Config {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad field: `pool_size` or
    /// `max_batch_size` of 0, or a zero `reschedule_duration`.
    pub fn validate(&self) -> Result<()> {
        if self.pool_size == 0 {
            return Err(Error::InvalidConfig(
                "pool_size must be at least 1".to_owned(),
            ));
        }
        if self.max_batch_size == 0 {
            return Err(Error::InvalidConfig(
                "max_batch_size must be at least 1".to_owned(),
            ));
        }
        if self.reschedule_duration.is_zero() {
            return Err(Error::InvalidConfig(
                "reschedule_duration must be greater than zero".to_owned(),
            ));
        }
        Ok(())
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_round_trips_through_json() {
        let cfg = Config::default();
        cfg.validate().unwrap();
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(text.contains("\"reschedule_duration_ms\":100"), "{text}");
        let back: Config = serde_json::from_str(&text).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn zero_sizes_are_rejected_with_the_field_name() {
        let zero_batch = Config {
            max_batch_size: 0,
            ..Config::default()
        };
        let err = zero_batch.validate().unwrap_err().to_string();
        assert!(err.contains("max_batch_size"), "{err}");
        let zero_resched = Config {
            reschedule_duration: Duration::ZERO,
            ..Config::default()
        };
        let err = zero_resched.validate().unwrap_err().to_string();
        assert!(err.contains("reschedule_duration"), "{err}");
    }
}
