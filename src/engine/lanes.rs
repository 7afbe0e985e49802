//! Where attempts run. Every attempt starts in the foreground, on the node's own runtime,
//! beside the store calls and the other attempts. One that keeps computing past a threshold
//! (a loop burning its fuel, a heavy job) moves to the background lane: a runtime of its own
//! with one thread per core, so heavy jobs on a quiet node use every core.
//!
//! Like the BEAM's schedulers, the lane shares its threads fairly: a guest hands its thread
//! back at every fuel yield (the reductions budget), and tokio queues it behind the other
//! demoted attempts, so N heavy jobs on C threads each get C/N of a core.
//!
//! Three measures keep heavy and hostile guests from slowing the stream of short jobs, and
//! the stream from starving the heavy jobs:
//! - **A share of the cores.** While the foreground is busy (an attempt started or ran there
//!   in the last `BUSY_WINDOW`), the lane may use `BACKGROUND_SHARE` of the node's cores,
//!   counted in the threads' own CPU time per `WINDOW`; once that is used, every demoted
//!   attempt rests until the window ends. The share is a ceiling: hostile loops (at most
//!   the seats) cannot take more. Whether heavy jobs get all of it beside a busy stream is
//!   the kernel's call (see `BACKGROUND_NICE`). On a quiet node the lane computes without
//!   rests.
//! - **Priority.** The lane's threads run at a lower CPU priority (`BACKGROUND_NICE`), so
//!   within its share a demoted attempt gives way first when a foreground thread wakes.
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

/// The part of the node's cores the background lane may use while the foreground is busy.
const BACKGROUND_SHARE: f64 = 0.36;
/// The period over which the share is counted: long enough that tokio's millisecond timers
/// round the rests by little, short enough that neither side waits long for the other.
const WINDOW: Duration = Duration::from_millis(12);
/// How long after the last foreground attempt started or ran the foreground still counts
/// as busy.
const BUSY_WINDOW: Duration = Duration::from_millis(50);
/// The lane threads' nice value: within the share, a foreground thread that wakes takes the
/// core first. (Linux weighs a process's threads as one group against the database's, so
/// priority alone would not protect the database: the share does.) Measured beside a no-op
/// stream on PostgreSQL on the same two cores: at nice 0 the lane got its whole share (heavy
/// jobs 0.34 of the cores) and the stream kept 0.63 of its rate beside hostile loops; at 10,
/// heavy jobs got 0.31–0.38 and the stream kept 0.72–0.90 (BENCHMARKS.md).
const BACKGROUND_NICE: i32 = 10;
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
    /// The background lane's use of its share in the current window.
    window: Mutex<Window>,
    /// CPU time the lane may use per `WINDOW` while the foreground is busy.
    budget: Duration,
    seats: Arc<Semaphore>,
}

struct Window {
    started: Instant,
    /// CPU time the lane's attempts used since `started`.
    used: Duration,
    /// Set once `used` reached the budget while the foreground was busy.
    resting: bool,
}

impl Window {
    fn starting(at: Instant) -> Window {
        Window {
            started: at,
            used: Duration::ZERO,
            resting: false,
        }
    }
}

impl Lanes {
    /// Lanes whose background has `threads` threads (one per core, usually).
    pub fn new(demote_after: Duration, threads: usize) -> Lanes {
        let threads = threads.max(1);
        let background = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sluice-background")
            .on_thread_start(|| {
                if !crate::os::lower_thread_priority(BACKGROUND_NICE) {
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
        let budget = WINDOW.mul_f64(BACKGROUND_SHARE * threads as f64);
        Lanes {
            background,
            demote_after,
            state: Arc::new(LaneState {
                foreground: AtomicUsize::new(0),
                origin: Instant::now(),
                last_activity: AtomicU64::new(0),
                window: Mutex::new(Window::starting(Instant::now())),
                budget,
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
            wall: Duration::ZERO,
            cpu: None,
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

/// An attempt that starts in the foreground and moves to the lane once it has computed there
/// for `demote_after`.
///
/// Its polls are timed by the wall clock (cheap) until they add up to half the threshold, and
/// by the thread's CPU clock (a system call each side) from then on; only CPU time completes
/// the threshold. A short job never pays for the CPU clock, and an attempt that only waits
/// (a sleep, a host call) is never demoted because a loaded machine preempted its thread in
/// the middle of a poll: that took its queue slot away from it, and its queue's concurrency
/// limit with it.
struct Demoting<T> {
    lane: Lane<T>,
    /// Wall time of the polls before `cpu` was started.
    wall: Duration,
    /// CPU time of the polls since the wall clock reached half the threshold.
    cpu: Option<Duration>,
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
                let half = this.demote_after / 2;
                let started = Instant::now();
                let cpu_started = this.cpu.map(|_| crate::os::thread_cpu_time());
                let poll = attempt.as_mut().poll(cx);
                let now = Instant::now();
                this.state.active_at(now);
                match (&mut this.cpu, cpu_started) {
                    (Some(cpu), Some(started)) => {
                        *cpu += crate::os::thread_cpu_time().saturating_sub(started)
                    }
                    _ => {
                        this.wall += now - started;
                        if this.wall >= half {
                            this.cpu = Some(Duration::ZERO);
                        }
                    }
                }
                let busy = match this.cpu {
                    Some(cpu) if cpu_started.is_some() => this.wall.min(half) + cpu,
                    _ => Duration::ZERO,
                };
                if poll.is_ready() || busy < this.demote_after {
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
                tracing::debug!(busy = ?busy, seated = seat.is_some(), "attempt moved to the background lane");
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

    /// When the lane's attempts may compute again: `None` if now.
    fn rest_until(&self, now: Instant) -> Option<Instant> {
        let mut window = self.window.lock().unwrap();
        let ends = window.started + WINDOW;
        if now >= ends {
            *window = Window::starting(now);
            return None;
        }
        window.resting.then_some(ends)
    }

    /// Counts `cpu` against the window; rests the lane once its share is used, if the
    /// foreground is busy.
    fn used(&self, cpu: Duration) {
        let mut window = self.window.lock().unwrap();
        window.used += cpu;
        if window.used >= self.budget && !window.resting && self.foreground_busy() {
            window.resting = true;
        }
    }
}

/// Counts an attempt as running in the foreground for as long as it lives there.
struct InForeground(Arc<LaneState>);

impl Drop for InForeground {
    fn drop(&mut self) {
        self.0.foreground.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A demoted attempt, resting whenever the lane has used its share while the foreground
/// works.
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
            match this.state.rest_until(Instant::now()) {
                Some(until) => this.rest = Some(Box::pin(tokio::time::sleep_until(until.into()))),
                None => break,
            }
        }
        // The thread's own CPU time, not the wall clock: a poll the kernel preempted for a
        // foreground thread or the database did not use the share.
        let started = crate::os::thread_cpu_time();
        let poll = this.attempt.as_mut().poll(cx);
        this.state
            .used(crate::os::thread_cpu_time().saturating_sub(started));
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
        let lanes = Lanes::new(Duration::from_millis(50), 2);
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
    async fn an_attempt_whose_thread_is_off_the_cpu_is_not_demoted() {
        // Each poll sleeps its thread, as a loaded machine's scheduler does to a poll it
        // preempts: ten times the threshold in wall time, next to none in CPU time.
        let lanes = Lanes::new(Duration::from_millis(2), 2);
        let here = std::thread::current().id();
        let (waiting, mut demoted) = lanes.run(async {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(2));
                tokio::task::yield_now().await;
            }
            std::thread::current().id()
        });
        assert_eq!(waiting.await, here, "stayed in the foreground");
        assert!(demoted.try_recv().is_err(), "kept its slot");
    }

    #[tokio::test]
    async fn long_attempts_run_on_every_background_thread() {
        let lanes = Lanes::new(Duration::from_millis(1), 2);
        // Each slice notes the thread it ran on: a one-thread lane could name only one.
        let slices = || async {
            let mut threads = std::collections::HashSet::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(300) {
                threads.insert(compute(Duration::from_millis(1)).await);
            }
            threads
        };
        let (first, _) = lanes.run(slices());
        let (second, _) = lanes.run(slices());
        let (first, second) = tokio::join!(first, second);
        let here = std::thread::current().id();
        // Their first slices ran here, before they had computed past the threshold.
        let threads: std::collections::HashSet<_> = first
            .union(&second)
            .copied()
            .filter(|thread| *thread != here)
            .collect();
        assert_eq!(
            threads.len(),
            2,
            "two heavy attempts used both lane threads"
        );
    }

    #[tokio::test]
    async fn a_panic_in_the_background_reaches_the_foreground_task() {
        let lanes = Lanes::new(Duration::from_millis(1), 2);
        let (attempt, _) = lanes.run(async {
            compute(Duration::from_millis(5)).await;
            panic!("guest host bug");
        });
        let error = tokio::spawn(attempt).await.unwrap_err();
        assert!(error.is_panic());
    }
}
