//! Where attempts run. Every attempt starts in the foreground, on the node's own runtime,
//! beside the store calls and the other attempts. One that keeps computing past a threshold
//! (a loop burning its fuel, a heavy job) moves to the background lane: a runtime of its own
//! whose thread has the lowest CPU priority. On a quiet machine it runs there at full speed;
//! while short jobs run it yields the CPU to them and to the database, so a few hostile or
//! heavy guests cannot slow the stream of normal jobs.
//!
//! Two measures make that hold:
//! - **Pacing.** Thread priority alone is not enough: Linux weighs a process's threads as one
//!   group against the database's (autogroup), so a busy background thread still takes a core
//!   from PostgreSQL. While the foreground is busy (an attempt started or ran there in the
//!   last `BUSY_WINDOW`: between two no-op jobs the foreground waits on the database), the
//!   whole lane rests `REST` after each `SLICE` of computing: at most a tenth of one core. An
//!   attempt that merely waits in the foreground (a sleep) does not count: it uses no CPU.
//! - **Seats.** A demoted attempt takes one of the node's background seats and gives its
//!   queue slot back, so a loop that runs until its deadline does not hold a slot meanwhile.
//!   With every seat taken, a demoted attempt keeps its slot.
//!
//! The move is safe because wasmtime's async calls are `Send` futures that may be resumed on
//! any thread; timers created in the foreground keep firing from the foreground runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

/// How long the background lane computes before resting, while the foreground is busy.
const SLICE: Duration = Duration::from_millis(1);
/// How long it rests then.
const REST: Duration = Duration::from_millis(9);
/// How long after the last foreground attempt started the foreground still counts as busy.
const BUSY_WINDOW: Duration = Duration::from_millis(50);
/// Demoted attempts per node that give their queue slot back.
pub(crate) const BACKGROUND_SEATS: usize = 16;

/// An attempt's future, boxed so it can move between runtimes.
type Attempt<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub(crate) struct Lanes {
    background: Option<Runtime>,
    /// CPU time in the foreground after which an attempt is demoted.
    demote_after: Duration,
    state: Arc<LaneState>,
}

struct LaneState {
    /// Attempts running in the foreground now.
    foreground: AtomicUsize,
    /// When the lanes were made: the origin of `last_activity`.
    origin: Instant,
    /// When an attempt last started or ran in the foreground, in microseconds since `origin`.
    last_activity: AtomicU64,
    /// When the background lane may compute again.
    rest_until: Mutex<Option<Instant>>,
    /// Background computing since the last rest.
    computed: Mutex<Duration>,
    seats: Arc<Semaphore>,
}

impl Lanes {
    pub fn new(demote_after: Duration) -> Lanes {
        let background = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-background")
            .on_thread_start(|| {
                if !crate::os::lower_thread_priority() {
                    tracing::debug!("cannot lower the background lane's priority");
                }
            })
            .enable_all()
            .build();
        let background = match background {
            Ok(runtime) => Some(runtime),
            Err(error) => {
                tracing::warn!(%error, "no background lane: long attempts stay in the foreground");
                None
            }
        };
        Lanes {
            background,
            demote_after,
            state: Arc::new(LaneState {
                foreground: AtomicUsize::new(0),
                origin: Instant::now(),
                last_activity: AtomicU64::new(0),
                rest_until: Mutex::new(None),
                computed: Mutex::new(Duration::ZERO),
                seats: Arc::new(Semaphore::new(BACKGROUND_SEATS)),
            }),
        }
    }

    /// Runs an attempt, demoting it to the background lane once it has computed for
    /// `demote_after`. The receiver resolves if it was demoted to a seat: its queue slot is
    /// free from then on.
    pub fn run<T: Send + 'static>(
        &self,
        attempt: impl Future<Output = T> + Send + 'static,
    ) -> (
        impl Future<Output = T> + Send + 'static,
        oneshot::Receiver<()>,
    ) {
        let (seated, demoted) = oneshot::channel();
        self.state.foreground.fetch_add(1, Ordering::Relaxed);
        self.state.active_at(Instant::now());
        let future = Demoting {
            lane: Lane::Foreground {
                attempt: Box::pin(attempt),
                _counted: InForeground(self.state.clone()),
                seated,
            },
            busy: Duration::ZERO,
            demote_after: self.demote_after,
            background: self.background.as_ref().map(|rt| rt.handle().clone()),
            state: self.state.clone(),
        };
        (future, demoted)
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        if let Some(runtime) = self.background.take() {
            // May be dropped inside the node's runtime, where blocking is not allowed.
            runtime.shutdown_background();
        }
    }
}

enum Lane<T> {
    Foreground {
        attempt: Attempt<T>,
        _counted: InForeground,
        seated: oneshot::Sender<()>,
    },
    Background(AbortOnDrop<T>),
    Moving,
}

struct Demoting<T> {
    lane: Lane<T>,
    busy: Duration,
    demote_after: Duration,
    background: Option<Handle>,
    state: Arc<LaneState>,
}

impl<T: Send + 'static> Future for Demoting<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        match &mut this.lane {
            Lane::Foreground { attempt, .. } => {
                let started = Instant::now();
                let poll = attempt.as_mut().poll(cx);
                let now = Instant::now();
                this.busy += now - started;
                this.state.active_at(now);
                if poll.is_ready() || this.busy < this.demote_after {
                    return poll;
                }
                let Some(background) = &this.background else {
                    return Poll::Pending;
                };
                let Lane::Foreground {
                    attempt, seated, ..
                } = std::mem::replace(&mut this.lane, Lane::Moving)
                else {
                    unreachable!("matched above")
                };
                // The foreground count dropped with the old lane.
                let seat = this.state.seats.clone().try_acquire_owned().ok();
                if seat.is_some() {
                    let _ = seated.send(());
                }
                tracing::debug!(busy = ?this.busy, seated = seat.is_some(), "attempt moved to the background lane");
                let paced = Paced {
                    attempt,
                    state: this.state.clone(),
                    rest: None,
                    _seat: seat,
                };
                this.lane = Lane::Background(AbortOnDrop(background.spawn(paced)));
                // Poll the handle once so this task is woken when the attempt ends.
                self.poll(cx)
            }
            Lane::Background(handle) => match Pin::new(&mut handle.0).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(output)) => Poll::Ready(output),
                // Carry a panic over to this task, where it fails the attempt as before.
                Poll::Ready(Err(error)) if error.is_panic() => {
                    std::panic::resume_unwind(error.into_panic())
                }
                Poll::Ready(Err(error)) => {
                    panic!("the background lane dropped an attempt: {error}")
                }
            },
            Lane::Moving => unreachable!("never observed outside poll"),
        }
    }
}

impl LaneState {
    fn active_at(&self, now: Instant) {
        let micros = now.saturating_duration_since(self.origin).as_micros() as u64;
        self.last_activity.store(micros, Ordering::Relaxed);
    }

    fn foreground_busy(&self) -> bool {
        let last = Duration::from_micros(self.last_activity.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last) < BUSY_WINDOW
    }
}

/// Counts an attempt as running in the foreground for as long as it lives there.
struct InForeground(Arc<LaneState>);

impl Drop for InForeground {
    fn drop(&mut self) {
        self.0.foreground.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A demoted attempt, resting whenever the lane has had its slice while the foreground works.
struct Paced<T> {
    attempt: Attempt<T>,
    state: Arc<LaneState>,
    rest: Option<Pin<Box<Sleep>>>,
    _seat: Option<OwnedSemaphorePermit>,
}

impl<T> Future for Paced<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        loop {
            if let Some(rest) = &mut this.rest {
                std::task::ready!(rest.as_mut().poll(cx));
                this.rest = None;
            }
            let rest_until = *this.state.rest_until.lock().unwrap();
            match rest_until {
                Some(until) if until > Instant::now() => {
                    this.rest = Some(Box::pin(tokio::time::sleep_until(until.into())));
                }
                _ => break,
            }
        }
        let started = Instant::now();
        let poll = this.attempt.as_mut().poll(cx);
        let mut computed = this.state.computed.lock().unwrap();
        *computed += started.elapsed();
        if *computed >= SLICE {
            *computed = Duration::ZERO;
            if this.state.foreground_busy() {
                *this.state.rest_until.lock().unwrap() = Some(Instant::now() + REST);
            }
        }
        poll
    }
}

/// A background task that ends with its handle: an attempt given up in the foreground
/// (handed back at shutdown) must stop in the background too.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computes for `total`, yielding every millisecond, as a metered guest does.
    async fn compute(total: Duration) -> std::thread::ThreadId {
        let started = Instant::now();
        while started.elapsed() < total {
            let slice = Instant::now();
            while slice.elapsed() < Duration::from_millis(1) {}
            tokio::task::yield_now().await;
        }
        std::thread::current().id()
    }

    #[tokio::test]
    async fn a_short_attempt_stays_and_a_long_one_moves_to_a_seat() {
        // Poll time is wall time: the threshold is far above any preemption a loaded
        // machine inflicts on an attempt that is ready at its first poll.
        let lanes = Lanes::new(Duration::from_millis(50));
        let here = std::thread::current().id();

        let (short, mut demoted) = lanes.run(async { std::thread::current().id() });
        assert_eq!(short.await, here);
        assert!(
            demoted.try_recv().is_err(),
            "a short attempt keeps its slot"
        );

        let (long, demoted) = lanes.run(compute(Duration::from_millis(200)));
        assert_ne!(long.await, here, "finished on the background lane");
        assert!(demoted.await.is_ok(), "a demoted attempt frees its slot");
        assert_eq!(lanes.state.foreground.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_panic_in_the_background_reaches_the_foreground_task() {
        let lanes = Lanes::new(Duration::from_millis(1));
        let (attempt, _) = lanes.run(async {
            compute(Duration::from_millis(5)).await;
            panic!("guest host bug");
        });
        let error = tokio::spawn(attempt).await.unwrap_err();
        assert!(error.is_panic());
    }
}
