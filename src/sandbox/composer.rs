//! `sluice:job/compose@0.2.0` on the host: collects what an attempt composes, within its
//! bounds, and answers what the guest may ask about its job.
//!
//! Nothing here writes to the store. Each request is checked when the guest makes it (so a
//! refusal is an error the guest can handle), then held in `Composed` until the attempt
//! ends; only a completed attempt's composition reaches the store.

use std::sync::Arc;

use super::bindings::AttemptState;
use super::bindings::v0_2::sluice::job::compose as wit;
use super::bindings::v0_2::sluice::job::types::Codec as WitCodec;
use crate::compose::{
    BatchCallbacks, CallSpec, ChildJob, Composed, Dependency, IfFailed, JobContext, JobRef,
    MAX_BATCHES, MAX_CHILDREN, MAX_COMPOSED_BYTES, MAX_DEPENDENCIES, Published,
};
use crate::model::{Codec, JobId};

/// What the host asks of the world outside the sandbox while a guest composes: the node's
/// runner answers from the store.
#[async_trait::async_trait]
pub trait Surroundings: Send + Sync {
    /// Whether a child (or callback) could be enqueued as asked: its module and function
    /// exist and its options are valid. The error is the message the guest receives.
    async fn check_call(&self, call: &CallSpec, child: Option<&ChildJob>) -> Result<(), String>;

    /// The whole output of a job (one the attempt's job waited for).
    async fn output_of(&self, job: JobId) -> Result<Vec<u8>, String>;
}

/// An attempt's composition, as the guest builds it.
#[derive(Default)]
pub(crate) struct Composer {
    context: JobContext,
    /// `None` outside a node's attempts (listing functions, a bare `Sandbox::run`): then
    /// composing is refused.
    surroundings: Option<Arc<dyn Surroundings>>,
    pub composed: Composed,
    bytes: usize,
    dependencies: usize,
}

impl Composer {
    pub fn new(context: JobContext, surroundings: Option<Arc<dyn Surroundings>>) -> Composer {
        Composer {
            context,
            surroundings,
            ..Composer::default()
        }
    }

    fn surroundings(&self) -> Result<Arc<dyn Surroundings>, String> {
        self.surroundings
            .clone()
            .ok_or_else(|| "composing jobs is possible only in a node's attempt".to_string())
    }

    fn room_for(&self, bytes: usize) -> Result<(), String> {
        let held = self.composed.children.len() + self.composed.published.len();
        if held >= MAX_CHILDREN {
            return Err(format!(
                "this attempt already holds {MAX_CHILDREN} child jobs and events, the most one attempt may"
            ));
        }
        if self.bytes + bytes > MAX_COMPOSED_BYTES {
            return Err(format!(
                "this attempt's children and events would hold more than {} MiB of args",
                MAX_COMPOSED_BYTES >> 20
            ));
        }
        Ok(())
    }

    async fn enqueue(&mut self, child: ChildJob) -> Result<u32, String> {
        self.room_for(child.call.args.len())?;
        let edges = self.dependencies + child.depends_on.len();
        if edges > MAX_DEPENDENCIES {
            return Err(format!(
                "this attempt's children would wait on more than {MAX_DEPENDENCIES} jobs in all"
            ));
        }
        let handle = self.composed.children.len() as u32;
        for dependency in &child.depends_on {
            match dependency.on {
                JobRef::Child(earlier) if earlier >= handle => {
                    return Err(format!(
                        "child {earlier} does not exist yet: a child can wait only for children enqueued before it"
                    ));
                }
                JobRef::Stored(id) if id < 1 => {
                    return Err(format!("{id} is not a job id"));
                }
                _ => {}
            }
        }
        if let Some(batch) = child.batch
            && batch as usize >= self.composed.batches.len()
        {
            return Err(format!("this attempt opened no batch {batch}"));
        }
        self.surroundings()?
            .check_call(&child.call, Some(&child))
            .await?;
        self.bytes += child.call.args.len();
        self.dependencies = edges;
        self.composed.children.push(child);
        Ok(handle)
    }

    async fn open_batch(&mut self, callbacks: BatchCallbacks) -> Result<u32, String> {
        if self.composed.batches.len() >= MAX_BATCHES {
            return Err(format!(
                "this attempt already opened {MAX_BATCHES} batches, the most one attempt may"
            ));
        }
        let bytes: usize = callbacks.calls().map(|call| call.args.len()).sum();
        self.room_for(bytes)?;
        if let Some(queue) = &callbacks.queue {
            crate::model::check_queue_name(queue)?;
        }
        let surroundings = self.surroundings()?;
        for call in callbacks.calls() {
            if call.codec != Codec::Json {
                return Err("a batch callback's args (its context) must be JSON".into());
            }
            surroundings.check_call(call, None).await?;
        }
        self.bytes += bytes;
        self.composed.batches.push(callbacks);
        Ok(self.composed.batches.len() as u32 - 1)
    }

    fn publish(&mut self, event: Published) -> Result<(), String> {
        crate::compose::check_topic(&event.topic)?;
        self.room_for(event.args.len())?;
        self.surroundings()?;
        if let Some(key) = &event.partition_key {
            crate::compose::check_partition_key(key)?;
        }
        crate::compose::check_args(&event.args, event.codec)?;
        self.bytes += event.args.len();
        self.composed.published.push(event);
        Ok(())
    }

    async fn dependency_output(&self, job: JobId) -> Result<Vec<u8>, String> {
        // Only the outputs of the jobs this one waited for: a guest never reads another's.
        let Some(found) = self.context.dependencies.iter().find(|d| d.job_id == job) else {
            return Err(format!("job {job} is not one this job waited for"));
        };
        if found.state != "completed" {
            return Err(format!("job {job} ended {}, with no output", found.state));
        }
        match &found.output {
            Some(output) => Ok(output.clone()),
            None => self.surroundings()?.output_of(job).await,
        }
    }
}

fn codec(codec: WitCodec) -> Codec {
    match codec {
        WitCodec::Json => Codec::Json,
        WitCodec::Postcard => Codec::Postcard,
    }
}

fn call(call: wit::JobCall) -> CallSpec {
    CallSpec {
        module: call.module,
        function: call.function,
        args: call.args,
        codec: codec(call.codec),
    }
}

impl wit::Host for AttemptState {
    async fn enqueue(
        &mut self,
        job: wit::JobCall,
        options: wit::JobOptions,
    ) -> Result<u32, String> {
        let depends_on = options
            .depends_on
            .into_iter()
            .map(|dependency| Dependency {
                on: match dependency.on {
                    wit::JobRef::Job(id) => JobRef::Stored(id),
                    wit::JobRef::Child(handle) => JobRef::Child(handle),
                },
                if_failed: match dependency.if_failed {
                    wit::IfFailed::Cancel => IfFailed::Cancel,
                    wit::IfFailed::Run => IfFailed::Run,
                },
            })
            .collect();
        let child = ChildJob {
            call: call(job),
            queue: options.queue,
            priority: options.priority,
            max_attempts: options.max_attempts,
            delay_ms: options.delay_ms,
            partition_key: options.partition_key,
            depends_on,
            batch: options.batch,
        };
        self.composer.enqueue(child).await
    }

    async fn open_batch(&mut self, callbacks: wit::BatchCallbacks) -> Result<u32, String> {
        let callbacks = BatchCallbacks {
            on_finished: callbacks.on_finished.map(call),
            on_success: callbacks.on_success.map(call),
            on_discard: callbacks.on_discard.map(call),
            queue: callbacks.queue,
        };
        self.composer.open_batch(callbacks).await
    }

    fn publish(
        &mut self,
        topic: String,
        args: Vec<u8>,
        codec_of_args: WitCodec,
        partition_key: Option<String>,
    ) -> Result<(), String> {
        self.composer.publish(Published {
            topic,
            args,
            codec: codec(codec_of_args),
            partition_key,
        })
    }

    fn current(&mut self) -> wit::JobContext {
        let context = &self.composer.context;
        wit::JobContext {
            id: context.id,
            attempt: context.attempt,
            parent: context.parent,
            batch: context.batch,
        }
    }

    fn dependencies(&mut self) -> Vec<wit::DependencyResult> {
        self.composer
            .context
            .dependencies
            .iter()
            .map(|found| wit::DependencyResult {
                job_id: found.job_id,
                module: found.module.clone(),
                function: found.function.clone(),
                state: found.state.clone(),
                output: found.output.clone(),
                output_bytes: found.output_bytes,
            })
            .collect()
    }

    async fn dependency_output(&mut self, job: JobId) -> Result<Vec<u8>, String> {
        self.composer.dependency_output(job).await
    }
}
