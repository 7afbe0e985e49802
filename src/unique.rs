//! Unique jobs, after River's design: a key made from the job's call (module, function, the
//! args or some of their fields, optionally the queue and a period), held while the job is in
//! one of the states its enqueue named. Every store enforces it with a partial unique index
//! over the key and a bitmask of those states, so a second enqueue of the same call returns
//! the job that holds the key, and a finished job no longer holds it unless told to.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Codec, JobState, NewJob, UniqueKey};

/// The states that always hold a unique job's key: a job that has not finished. A job moves
/// between them (claimed, retried, staged, rescued) without ever meeting another holder.
pub const HELD_WHILE_UNFINISHED: [JobState; 5] = [
    JobState::Available,
    JobState::Scheduled,
    JobState::Running,
    JobState::Retryable,
    JobState::Held,
];

/// What makes two calls the same job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UniqueOptions {
    /// Only these top-level fields of the (JSON) args count; all the args when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Whether the queue counts: the same call on two queues is then two jobs.
    #[serde(default)]
    pub by_queue: bool,
    /// Calls scheduled in different periods of this many seconds (counted from the Unix
    /// epoch) are different jobs: at most one per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_secs: Option<u64>,
    /// Finished states in which the job still holds its key (`completed`, `discarded`,
    /// `cancelled`); an unfinished job always holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<String>,
}

impl UniqueOptions {
    /// The key `job` holds under these options, with `now` as its time if it names none.
    pub fn key_for(&self, job: &NewJob, now: DateTime<Utc>) -> Result<UniqueKey, String> {
        let mut states = HELD_WHILE_UNFINISHED
            .iter()
            .fold(0u8, |mask, state| mask | state.bit());
        for name in &self.finished {
            match JobState::parse(name) {
                Some(state) if state.is_finished() => states |= state.bit(),
                _ => {
                    return Err(format!(
                        "`{name}` is not a finished state; a unique job may also hold its key \
                         when completed, discarded or cancelled"
                    ));
                }
            }
        }
        let args = match (&self.fields, job.codec) {
            (None, Codec::Json) => canonical_json(&job.args)?,
            (None, Codec::Postcard) => serde_json::Value::String(hex::encode(&job.args)),
            (Some(_), Codec::Postcard) => {
                return Err("unique fields need JSON args; postcard args count whole".into());
            }
            (Some(fields), Codec::Json) => {
                let args = canonical_json(&job.args)?;
                let serde_json::Value::Object(object) = args else {
                    return Err("unique fields need args that are a JSON object".into());
                };
                let chosen: serde_json::Map<String, serde_json::Value> = fields
                    .iter()
                    .map(|field| {
                        let value = object.get(field).cloned().unwrap_or_default();
                        (field.clone(), value)
                    })
                    .collect();
                serde_json::Value::Object(chosen)
            }
        };
        let period = match self.period_secs {
            None => None,
            Some(0) => return Err("a unique period must be at least a second".into()),
            Some(seconds) => {
                let at = job.scheduled_at.unwrap_or(now).timestamp();
                let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
                Some(at.div_euclid(seconds) * seconds)
            }
        };
        // Objects serialize with sorted keys: the same call is the same text.
        let identity = serde_json::json!({
            "module": job.module,
            "function": job.function,
            "args": args,
            "queue": self.by_queue.then_some(&job.queue),
            "period": period,
        });
        let digest = Sha256::digest(identity.to_string().as_bytes());
        Ok(UniqueKey {
            key: format!("unique:{}", hex::encode(digest)),
            expires_at: None,
            states: Some(states),
        })
    }

    /// The period as a duration, for display.
    pub fn period(&self) -> Option<Duration> {
        self.period_secs.map(Duration::from_secs)
    }
}

fn canonical_json(args: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(args).map_err(|error| format!("the args are not JSON: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: serde_json::Value) -> NewJob {
        NewJob::json("mail", "welcome", &args)
    }

    fn key(options: &UniqueOptions, job: &NewJob) -> String {
        options.key_for(job, Utc::now()).unwrap().key
    }

    #[test]
    fn the_same_call_makes_the_same_key_whatever_the_order_of_its_fields() {
        let all = UniqueOptions::default();
        let a = call(serde_json::json!({"user": 1, "lang": "fr"}));
        let b = NewJob {
            args: br#"{"lang":"fr","user":1}"#.to_vec(),
            ..a.clone()
        };
        assert_eq!(key(&all, &a), key(&all, &b));
        assert_ne!(
            key(&all, &a),
            key(&all, &call(serde_json::json!({"user": 2})))
        );
        let other = NewJob {
            function: "goodbye".into(),
            ..a.clone()
        };
        assert_ne!(key(&all, &a), key(&all, &other));
    }

    #[test]
    fn chosen_fields_queue_and_period_narrow_or_widen_the_key() {
        let by_user = UniqueOptions {
            fields: Some(vec!["user".into()]),
            ..Default::default()
        };
        let fr = call(serde_json::json!({"user": 1, "lang": "fr"}));
        let en = call(serde_json::json!({"user": 1, "lang": "en"}));
        assert_eq!(key(&by_user, &fr), key(&by_user, &en));

        let by_queue = UniqueOptions {
            by_queue: true,
            ..Default::default()
        };
        let elsewhere = NewJob {
            queue: "bulk".into(),
            ..fr.clone()
        };
        assert_ne!(key(&by_queue, &fr), key(&by_queue, &elsewhere));
        assert_eq!(
            key(&UniqueOptions::default(), &fr),
            key(&UniqueOptions::default(), &elsewhere)
        );

        let hourly = UniqueOptions {
            period_secs: Some(3600),
            ..Default::default()
        };
        let at = |text: &str| NewJob {
            scheduled_at: Some(text.parse().unwrap()),
            ..fr.clone()
        };
        assert_eq!(
            key(&hourly, &at("2026-12-07T10:05:00Z")),
            key(&hourly, &at("2026-12-07T10:55:00Z"))
        );
        assert_ne!(
            key(&hourly, &at("2026-12-07T10:55:00Z")),
            key(&hourly, &at("2026-12-07T11:05:00Z"))
        );
    }

    #[test]
    fn the_states_always_hold_while_unfinished_and_finished_ones_when_named() {
        let job = call(serde_json::json!({}));
        let plain = UniqueOptions::default().key_for(&job, Utc::now()).unwrap();
        let mask = plain.states.unwrap();
        for state in JobState::ALL {
            assert_eq!(mask & state.bit() != 0, !state.is_finished(), "{state}");
        }
        let kept = UniqueOptions {
            finished: vec!["completed".into()],
            ..Default::default()
        }
        .key_for(&job, Utc::now())
        .unwrap();
        assert_ne!(kept.states.unwrap() & JobState::Completed.bit(), 0);
        assert_eq!(kept.states.unwrap() & JobState::Discarded.bit(), 0);
        let error = UniqueOptions {
            finished: vec!["running".into()],
            ..Default::default()
        }
        .key_for(&job, Utc::now())
        .unwrap_err();
        assert!(error.contains("is not a finished state"), "{error}");
    }
}
