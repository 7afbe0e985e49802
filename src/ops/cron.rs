//! Periodic jobs: an entry is checked here once (its name, schedule, zone, call and args),
//! whether it comes from the CLI, the API or the config file.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::model::{Codec, LimitOverrides, NewJob, UniqueKey};
use crate::schedule::Schedule;
use crate::store::{CronEntry, CronPut, Misfire, Store};

use super::tokens::record_action;
use super::{OpError, OpResult};

/// How long a slot's job holds its key (`cron:NAME:SLOT`): far longer than two nodes can
/// both believe they lead, so a slot's job is inserted once.
const SLOT_KEY_HELD: TimeDelta = TimeDelta::days(1);

/// An entry as a user writes it; `None`s take the defaults.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSpec {
    /// A cron expression: five fields, or six with seconds first.
    pub schedule: String,
    pub module: String,
    pub function: String,
    /// The call's args as JSON text; `null` when absent. In the config file, a table
    /// (`args = { user_id = 1 }`) is read as the JSON object it spells.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "json_text_or_value"
    )]
    pub args: Option<String>,
    /// `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// An IANA zone; `UTC` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `skip` (the default) or `run_once`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
}

/// Args given as JSON text, or as a structured value (a TOML table) turned into JSON text.
fn json_text_or_value<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Args {
        Text(String),
        Value(serde_json::Value),
    }
    Ok(Some(
        match <Args as serde::Deserialize>::deserialize(deserializer)? {
            Args::Text(text) => text,
            Args::Value(value) => value.to_string(),
        },
    ))
}

/// Whether `name` can name a cron entry: 1 to 128 letters, digits, `_`, `-` and `.`.
fn check_name(name: &str) -> OpResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(OpError::Invalid(format!(
            "`{}` is not a cron entry name: use 1 to 128 letters, digits, `_`, `-` and `.`",
            name.escape_debug()
        )))
    }
}

/// The entry `spec` describes, checked: the module must export the function.
pub async fn check_cron(store: &dyn Store, name: &str, spec: CronSpec) -> OpResult<CronEntry> {
    check_name(name)?;
    let timezone = spec.timezone.unwrap_or_else(|| "UTC".to_string());
    let schedule = Schedule::parse(&spec.schedule, &timezone).map_err(OpError::Invalid)?;
    if schedule.next_after(Utc::now()).is_none() {
        return Err(OpError::Invalid(format!(
            "`{}` never falls on a date to come",
            spec.schedule
        )));
    }
    let misfire = match spec.misfire.as_deref() {
        None => Misfire::Skip,
        Some(text) => Misfire::parse(text).ok_or_else(|| {
            OpError::Invalid(format!(
                "`{text}` is not a misfire policy; use skip or run_once"
            ))
        })?,
    };
    let args = super::json_args(spec.args.as_deref().unwrap_or("null"))?;
    let now = Utc::now();
    let entry = CronEntry {
        name: name.to_string(),
        schedule: spec.schedule,
        timezone,
        misfire,
        queue: spec
            .queue
            .unwrap_or_else(|| NewJob::DEFAULT_QUEUE.to_string()),
        module: spec.module,
        function: spec.function,
        args: String::from_utf8(args).expect("serde_json writes UTF-8"),
        priority: spec.priority.unwrap_or(0),
        max_attempts: spec.max_attempts.unwrap_or(NewJob::DEFAULT_MAX_ATTEMPTS),
        // Slots are whole seconds: the first one inserted is after this.
        last_slot: now.duration_trunc(TimeDelta::seconds(1)).unwrap_or(now),
        updated_at: now,
    };
    // The job a slot would insert goes through every check an enqueue does.
    let sample = slot_job(&entry, entry.last_slot);
    super::jobs::check_job_options(&sample)?;
    crate::store::check_new_job(&sample, crate::store::DEFAULT_MAX_ARGS_BYTES)?;
    super::jobs::check_call(store, &sample).await?;
    Ok(entry)
}

/// Stores an entry (replacing one of that name), recording that `actor` did.
pub async fn put_cron(
    store: &dyn Store,
    name: &str,
    spec: CronSpec,
    actor: &str,
) -> OpResult<CronEntry> {
    let entry = check_cron(store, name, spec).await?;
    let stored = store
        .cron_put(CronPut {
            entry,
            replace: true,
        })
        .await?;
    record_action(store, actor, "cron.put", name).await;
    Ok(stored)
}

/// Stores an entry of the config file if the store has none of that name; one it has is
/// left as the CLI or API last set it. Returns the entry as stored.
pub async fn seed_cron(store: &dyn Store, name: &str, spec: CronSpec) -> OpResult<CronEntry> {
    let entry = check_cron(store, name, spec).await?;
    Ok(store
        .cron_put(CronPut {
            entry,
            replace: false,
        })
        .await?)
}

/// Removes an entry; the jobs it inserted stay.
pub async fn remove_cron(store: &dyn Store, name: &str, actor: &str) -> OpResult<()> {
    if !store.cron_remove(name).await? {
        return Err(OpError::CronNotFound(name.to_string()));
    }
    record_action(store, actor, "cron.remove", name).await;
    Ok(())
}

/// When an entry's next slot falls after its last one (`None` if never again, or if its
/// stored schedule no longer parses).
pub fn next_slot(entry: &CronEntry) -> Option<DateTime<Utc>> {
    Schedule::parse(&entry.schedule, &entry.timezone)
        .ok()?
        .next_after(entry.last_slot)
}

/// The job an entry inserts for `slot`: scheduled at the slot, holding the slot's key.
pub fn slot_job(entry: &CronEntry, slot: DateTime<Utc>) -> NewJob {
    NewJob {
        queue: entry.queue.clone(),
        module: entry.module.clone(),
        module_version: None,
        function: entry.function.clone(),
        args: entry.args.as_bytes().to_vec(),
        codec: Codec::Json,
        priority: entry.priority,
        max_attempts: entry.max_attempts,
        scheduled_at: Some(slot),
        limits: LimitOverrides::default(),
        unique: Some(UniqueKey {
            key: format!("cron:{}:{}", entry.name, slot.timestamp()),
            expires_at: Some(slot + SLOT_KEY_HELD),
            states: None,
        }),
        partition_key: None,
        depends_on: Vec::new(),
        parent_id: None,
        batch_id: None,
    }
}
