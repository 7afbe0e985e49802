//! Settings from `sluice.toml`, `SLUICE_*` environment variables and command-line flags,
//! layered in that order (each over the one before) by figment, the only module that knows it;
//! every value remembers which layer gave it, for `sluice config`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

/// The file read when `--config` names none, if it exists in the working directory.
pub const DEFAULT_FILE: &str = "sluice.toml";

/// Everything a Sluice process can be told. Each section refuses keys it does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The store: `sqlite://PATH` (embedded) or `postgres://USER@HOST/DB`.
    pub database_url: String,
    pub database: DatabaseSettings,
    pub api: ApiSettings,
    pub node: NodeSettings,
    /// The queues `sluice run` serves, each with how many of its jobs run at once; with none
    /// named, `default` with 16.
    pub queues: BTreeMap<String, u32>,
    pub jobs: JobSettings,
    /// Periodic jobs, by name (`[cron.NAME]`): `sluice run` stores those the store lacks,
    /// `sluice config apply` replaces them all; the CLI and API change them at run time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cron: BTreeMap<String, crate::ops::CronSpec>,
    /// Queue limits every node obeys, by queue (`[limits.NAME]`): `sluice run` stores those
    /// of queues that have none in the store, `sluice config apply` replaces them; the CLI
    /// and API change them at run time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, crate::limits::QueueLimits>,
    /// Queue autoscaling, by queue (`[autoscale.NAME]`), seeded and applied as the limits are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub autoscale: BTreeMap<String, crate::limits::Autoscale>,
    /// Circuit breaker policies, by `module.function` or `module.*`
    /// (`[breakers."mailer.send"]`), seeded and applied as the limits are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breakers: BTreeMap<String, crate::breakers::BreakerPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connections to PostgreSQL (on SQLite: half of it are readers, beside one writer).
    pub pool_size: u32,
    /// SQLite's `synchronous`: `normal` survives a crash of the process but may lose the last
    /// commits on power loss; `full` survives that too, at a cost per commit.
    pub sqlite_synchronous: Synchronous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// `IP:PORT` (port 0 picks a free one) or `none`.
    pub listen: String,
    /// The largest module an upload may carry, in bytes.
    pub max_module_size: usize,
    /// The path the dashboard and API are reached under behind a reverse proxy (`/sluice`);
    /// empty when served at the root. The node answers under it and at the root alike, so
    /// the proxy may strip it or not.
    #[serde(default)]
    pub base_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// This node's id; generated when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where compiled modules are cached; the user's cache directory when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// How long a claim survives without a heartbeat.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How long running attempts may finish after SIGINT/SIGTERM.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// How often to look for jobs when no notification arrives; by store when absent.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub poll: Option<Duration>,
    /// How often the leader stages due jobs, rescues expired leases and prunes.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// Finished jobs older than this are pruned.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Retention of completed jobs, if not `retention`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention_completed: Option<Duration>,
    /// Retention of discarded jobs (the dead letters), if not `retention`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention_discarded: Option<Duration>,
    /// Retention of cancelled jobs, if not `retention`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention_cancelled: Option<Duration>,
    /// First retry delay; later ones double (with jitter) up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Attempts of one job lost with their node in a row before it is dead-lettered.
    pub poison_limit: i32,
    /// Bytes all attempts of the node may hold together; half of physical memory when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<u64>,
    /// Largest batch one fetch claims.
    pub fetch_size: u32,
    /// Largest batch of outcomes one store call writes.
    pub completion_batch: usize,
}

/// Limits of jobs that set none of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Attempts a job gets before it is discarded (at enqueue).
    pub max_attempts: i32,
    /// Fuel an attempt may burn.
    pub fuel: u64,
    /// An attempt's wall-clock deadline.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// An attempt's largest linear memory, in bytes.
    pub memory: u64,
    /// How long a job holds the idempotency key it was enqueued with.
    #[serde(with = "humantime_serde")]
    pub idempotency_period: Duration,
}

impl NodeSettings {
    /// The retention of each finished state: its own if set, else `retention`.
    pub fn retention_by_state(&self) -> crate::config::Retention {
        crate::config::Retention {
            completed: self.retention_completed.unwrap_or(self.retention),
            discarded: self.retention_discarded.unwrap_or(self.retention),
            cancelled: self.retention_cancelled.unwrap_or(self.retention),
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        let engine = crate::config::EngineConfig::new(String::new(), Vec::new());
        let limits = crate::sandbox::Limits::default();
        Settings {
            database_url: crate::store::DEFAULT_DATABASE_URL.to_string(),
            database: DatabaseSettings {
                pool_size: crate::store::DEFAULT_POOL_SIZE,
                sqlite_synchronous: Synchronous::Normal,
            },
            api: ApiSettings {
                listen: crate::api::DEFAULT_LISTEN.to_string(),
                max_module_size: crate::sandbox::DEFAULT_MAX_MODULE_BYTES,
                base_path: String::new(),
            },
            node: NodeSettings {
                id: None,
                cache_dir: None,
                lease: engine.lease,
                grace: engine.grace_period,
                poll: None,
                maintenance_interval: engine.maintenance_interval,
                retention: engine.retention.completed,
                retention_completed: None,
                retention_discarded: None,
                retention_cancelled: None,
                backoff_base: engine.backoff_base,
                backoff_max: engine.backoff_max,
                poison_limit: engine.poison_limit,
                memory_budget: None,
                fetch_size: engine.max_fetch,
                completion_batch: engine.max_completion_batch,
            },
            // Empty here, filled in after the layers: a file's queues replace the default
            // queue rather than join it.
            queues: BTreeMap::new(),
            jobs: JobSettings {
                max_attempts: crate::model::NewJob::DEFAULT_MAX_ATTEMPTS,
                fuel: limits.fuel,
                timeout: limits.timeout,
                memory: limits.memory_bytes,
                idempotency_period: crate::ops::DEFAULT_IDEMPOTENCY_PERIOD,
            },
            cron: BTreeMap::new(),
            limits: BTreeMap::new(),
            autoscale: BTreeMap::new(),
            breakers: BTreeMap::new(),
        }
    }
}

/// Why the settings cannot be used: names the file (or variable, or flag), key and reason.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("the config file {} does not exist", .0.display())]
    NoSuchFile(PathBuf),
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// The layers, before they are read into [`Settings`].
#[derive(Clone)]
pub struct Layers {
    figment: Figment,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
}

/// Top-level keys, the only `SLUICE_*` variables read as settings (`SLUICE_LOG` and the
/// like are not settings). Nested keys use `__`: `SLUICE_NODE__LEASE=10s`.
const SECTIONS: &[&str] = &[
    "database_url",
    "database",
    "api",
    "node",
    "queues",
    "jobs",
    "cron",
    "limits",
    "autoscale",
    "breakers",
];

/// Variables older than the config file, kept working.
const ALIASES: &[(&str, &str)] = &[("listen", "api.listen"), ("cache_dir", "node.cache_dir")];

impl Layers {
    /// Defaults, then the config file (`file`, or `sluice.toml` here if it exists), then the
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Layers, SettingsError> {
        let file = match file {
            Some(path) if !path.exists() => {
                return Err(SettingsError::NoSuchFile(path.to_path_buf()));
            }
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|path| path.exists()),
        };
        let mut figment = Figment::from(Named {
            name: "default".into(),
            inner: Serialized::defaults(Settings::default()),
        });
        if let Some(path) = &file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("SLUICE_")
            .map(|key| {
                let key = key.as_str().to_ascii_lowercase();
                let key = key.as_str();
                let aliased = ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == key)
                    .map_or(key, |(_, real)| real);
                aliased.replace("__", ".").into()
            })
            .filter(|key| {
                let section = key.as_str().split('.').next().unwrap_or_default();
                SECTIONS.contains(&section)
            })
            .split(".");
        figment = figment.merge(env);
        Ok(Layers { figment, file })
    }

    /// A layer over the others for a flag that was given: `key` is the setting's dotted path.
    pub fn flag(mut self, key: &str, flag: &'static str, value: Option<impl Serialize>) -> Layers {
        if let Some(value) = value {
            self.figment = self.figment.merge(Named {
                name: format!("flag {flag}"),
                inner: Serialized::default(key, value),
            });
        }
        self
    }

    /// A duration flag, written as the file would write it.
    pub fn duration_flag(self, key: &str, flag: &'static str, value: Option<Duration>) -> Layers {
        self.flag(
            key,
            flag,
            value.map(|d| humantime::format_duration(d).to_string()),
        )
    }

    /// The settings, checked.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let mut settings: Settings = self
            .figment
            .extract()
            .map_err(|error| SettingsError::Invalid(describe(&error)))?;
        if settings.queues.is_empty() {
            settings.queues.insert(
                crate::model::NewJob::DEFAULT_QUEUE.to_string(),
                crate::config::EngineConfig::DEFAULT_CONCURRENCY,
            );
        }
        settings.check().map_err(|(key, reason)| {
            let source = self
                .figment
                .find_metadata(&key)
                .map_or_else(|| "default".to_string(), |meta| source_of(meta, &key));
            SettingsError::Invalid(format!("{key}: {reason} (from {source})"))
        })?;
        Ok(settings)
    }

    /// Every setting with its value and the layer that gave it, in key order.
    pub fn explain(&self) -> Result<Vec<Explained>, SettingsError> {
        let settings = self.settings()?;
        let value = serde_json::to_value(&settings).expect("settings serialize");
        let mut leaves = Vec::new();
        flatten("", &value, &mut leaves);
        Ok(leaves
            .into_iter()
            .map(|(key, value)| {
                let source = self
                    .figment
                    .find_metadata(&key)
                    .map_or_else(|| "default".to_string(), |meta| source_of(meta, &key));
                Explained { key, value, source }
            })
            .collect())
    }
}

/// One setting as `sluice config` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub key: String,
    pub value: serde_json::Value,
    /// `default`, `flag --lease`, `env SLUICE_NODE__LEASE` or `file PATH`.
    pub source: String,
}

impl Settings {
    /// Checks what the types alone do not: the key at fault and why.
    fn check(&self) -> Result<(), (String, String)> {
        for (name, concurrency) in &self.queues {
            if *concurrency == 0 {
                return Err((
                    format!("queues.{name}"),
                    format!("queue {name} needs a concurrency of at least 1"),
                ));
            }
        }
        if self.database.pool_size == 0 {
            return Err(("database.pool_size".into(), "must be at least 1".into()));
        }
        if self.jobs.max_attempts < 1 {
            return Err(("jobs.max_attempts".into(), "must be at least 1".into()));
        }
        crate::api::Listen::parse(&self.api.listen).map_err(|e| ("api.listen".into(), e))?;
        crate::api::base_path(&self.api.base_path).map_err(|e| ("api.base_path".into(), e))?;
        Ok(())
    }
}

/// Where the value of `key` came from, in words: a file, a variable or a flag.
fn source_of(metadata: &Metadata, key: &str) -> String {
    match &metadata.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        _ if metadata.name.contains("environment") => {
            let mut names = vec![format!("SLUICE_{}", key.to_uppercase().replace('.', "__"))];
            if let Some((alias, _)) = ALIASES.iter().find(|(_, real)| *real == key) {
                names.push(format!("SLUICE_{}", alias.to_uppercase()));
            }
            format!("env {}", names.join(" or "))
        }
        _ => metadata.name.to_string(),
    }
}

/// The error with the key and the layer it came from, in one line.
fn describe(error: &figment::Error) -> String {
    let key = error.path.join(".");
    let mut text = error.kind.to_string();
    if !key.is_empty() {
        text = format!("{key}: {text}");
    }
    if let Some(metadata) = &error.metadata {
        text = format!("{text} (from {})", source_of(metadata, &key));
    }
    text
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        leaf => out.push((prefix.to_string(), leaf.clone())),
    }
}

/// A provider under a name of ours, so `sluice config` says "default" or "flag --lease"
/// rather than a Rust type's name.
struct Named<P> {
    name: String,
    inner: P,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}
