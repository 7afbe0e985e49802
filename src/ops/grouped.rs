//! Single enqueues committed in groups: concurrent callers (many HTTP clients) each check
//! their own call, then hand the job to one writer task that stores whatever has gathered
//! in one transaction, as the completer does with outcomes. A group grows exactly as fast
//! as the store falls behind: alone, a job is stored at once.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::model::NewJob;
use crate::store::{Enqueued, Store};

use super::OpResult;

/// The most jobs one group stores.
const MAX_GROUP: usize = 1000;

type Pending = (NewJob, oneshot::Sender<OpResult<Enqueued>>);

/// The handle callers enqueue through; cheap to clone.
#[derive(Clone)]
pub struct GroupedEnqueue {
    store: Arc<dyn Store>,
    queue: mpsc::Sender<Pending>,
    /// What calls are checked against: a store read per enqueue cost more than the insert.
    modules: Arc<super::RecentModules>,
}

impl GroupedEnqueue {
    /// Starts the writer task on the current runtime; it ends when every handle is gone.
    pub fn start(store: Arc<dyn Store>) -> GroupedEnqueue {
        let (queue, pending) = mpsc::channel(MAX_GROUP * 4);
        tokio::spawn(write_groups(store.clone(), pending));
        GroupedEnqueue {
            store,
            queue,
            modules: Arc::default(),
        }
    }

    /// A new version of `name` was uploaded through this node: the next call sees it.
    pub fn module_uploaded(&self, name: &str) {
        self.modules.uploaded(name);
    }

    /// Checks one job as `enqueue` does (against the module as read in the last second, or
    /// as uploaded through this node since), then stores it with whatever other jobs are
    /// waiting; returns its id (or that of the job holding its key).
    pub async fn enqueue(&self, job: NewJob) -> OpResult<Enqueued> {
        super::jobs::check_with(self.store.as_ref(), &self.modules, &job).await?;
        let (answer, answered) = oneshot::channel();
        if self.queue.send((job, answer)).await.is_err() {
            return Err(writer_gone());
        }
        answered.await.unwrap_or_else(|_| Err(writer_gone()))
    }
}

fn writer_gone() -> super::OpError {
    super::OpError::Store(crate::store::StoreError::Unavailable(
        "the enqueue writer stopped".into(),
    ))
}

async fn write_groups(store: Arc<dyn Store>, mut pending: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while pending.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (jobs, answers): (Vec<NewJob>, Vec<_>) = std::mem::take(&mut group).into_iter().unzip();
        match store.job_enqueue(jobs.clone()).await {
            Ok(enqueued) => {
                for (answer, one) in answers.into_iter().zip(enqueued) {
                    let _ = answer.send(Ok(one));
                }
            }
            // One job the store refuses must not cost the others theirs: alone, each gets
            // its own answer.
            Err(_) if jobs.len() > 1 => {
                for (job, answer) in jobs.into_iter().zip(answers) {
                    let result = store.job_enqueue(vec![job]).await;
                    let _ = answer.send(result.map(|mut one| one.remove(0)).map_err(Into::into));
                }
            }
            Err(error) => {
                let answer = answers.into_iter().next().expect("one job, one answer");
                let _ = answer.send(Err(error.into()));
            }
        }
    }
}
