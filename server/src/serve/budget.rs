//! The connection budget: at most `max_connections` open at once, and which of them may
//! be closed to make room when it is spent.
//!
//! Deadlines alone do not keep a spent budget from locking clients out: with
//! `--max-connections 500` and 3,000 idle keep-alive connections (each closed after the
//! 20 s header deadline), a real client that came after them waited 25 s at the median
//! and 48 s at worst (`siege slow --kind idle --max-connections 500`), queued in the
//! listen backlog behind the others. So when the budget is spent, the accept loop closes
//! the connection that has been *waiting on its client* the longest — for its first or
//! next request head (idle keep-alive, a trickled head) or for a request body it is
//! still sending — and accepts the next one in its place. A connection whose request is
//! being answered, or that holds an event stream, is never closed for room: what was
//! accepted is answered. A connection must have waited [`MIN_WAIT`] before it can be
//! chosen, so that a client between two quick requests is not cut off.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a connection must have waited on its client before it may be closed to make
/// room for a new one.
pub const MIN_WAIT: Duration = Duration::from_secs(1);

/// The budget of one server.
pub struct Budget {
    permits: Arc<Semaphore>,
    max: usize,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    epoch: Instant,
}

/// One open connection as the budget sees it.
pub struct Conn {
    id: u64,
    epoch: Instant,
    /// Requests being answered (their response body not yet written to its end).
    answering: AtomicUsize,
    /// When the connection last started waiting for a request head, in ms since the
    /// epoch (meaningful while nothing is being answered).
    idle_since: AtomicU64,
    /// When the request whose body is still arriving started, in ms since the epoch
    /// (0: none).
    body_since: AtomicU64,
    evicted: CancellationToken,
}

/// A place in the budget: its permit and its connection, given back on drop.
pub struct Slot {
    pub conn: Arc<Conn>,
    budget: Arc<Budget>,
    _permit: OwnedSemaphorePermit,
}

impl Budget {
    pub fn new(max_connections: usize) -> Arc<Budget> {
        let max = max_connections.max(1);
        Arc::new(Budget {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            epoch: Instant::now(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Whether less than 1 % of the budget is left.
    pub fn nearly_spent(&self) -> bool {
        self.permits.available_permits() <= self.max / 100
    }

    /// A place, if one is free now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.slot(permit))
    }

    /// A place, once one is free.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        // The semaphore is never closed.
        let permit = self.permits.clone().acquire_owned().await.expect("the budget's semaphore stays open");
        self.slot(permit)
    }

    fn slot(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            answering: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            body_since: AtomicU64::new(0),
            evicted: CancellationToken::new(),
        });
        lock(&self.open).insert(conn.id, conn.clone());
        Slot { conn, budget: self.clone(), _permit: permit }
    }

    /// Closes the connection that has waited on its client the longest (at least
    /// [`MIN_WAIT`]); answers whether there was one. Its place frees once its task ends.
    pub fn evict_longest_waiting(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let min = MIN_WAIT.as_millis() as u64;
        let mut open = lock(&self.open);
        let chosen = open
            .values()
            .filter_map(|conn| Some((conn.waiting_since()?, conn.id)))
            .filter(|(since, _)| now.saturating_sub(*since) >= min)
            .min();
        let Some((since, id)) = chosen else { return false };
        if let Some(conn) = open.remove(&id) {
            tracing::debug!(
                waited_ms = now - since,
                "connection budget spent: closing the connection that waited longest"
            );
            conn.evicted.cancel();
        }
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.budget.open).remove(&self.conn.id);
    }
}

impl Conn {
    /// Fires when the budget closes this connection to make room.
    pub async fn evicted(&self) {
        self.evicted.cancelled().await
    }

    /// Since when the connection waits on its client, if it does: for a request head
    /// while nothing is answered, or for the body of the request being received.
    fn waiting_since(&self) -> Option<u64> {
        let body = self.body_since.load(Ordering::Acquire);
        if body != 0 {
            return Some(body);
        }
        (self.answering.load(Ordering::Acquire) == 0).then(|| self.idle_since.load(Ordering::Acquire))
    }

    fn now(&self) -> u64 {
        // Never 0, which means "none" for `body_since`.
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    /// How long the connection has had nothing to answer (`None`: it is answering, or
    /// receiving a request body).
    pub fn idle_for(&self) -> Option<Duration> {
        if self.answering.load(Ordering::Acquire) != 0 || self.body_since.load(Ordering::Acquire) != 0 {
            return None;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        Some(Duration::from_millis((self.epoch.elapsed().as_millis() as u64).saturating_sub(since)))
    }

    /// A request arrived: the connection is busy until the answer's guard drops. When
    /// its body is still to come, the body's guard marks it waiting until it has.
    pub fn answering(self: &Arc<Self>, body_pending: bool) -> (Answering, Option<Receiving>) {
        self.answering.fetch_add(1, Ordering::AcqRel);
        let receiving = body_pending.then(|| {
            self.body_since.store(self.now(), Ordering::Release);
            Receiving(self.clone())
        });
        (Answering(self.clone()), receiving)
    }

    /// The connection holds an event stream for the rest of its life: never chosen.
    pub fn streaming(self: &Arc<Self>) -> Answering {
        self.answering(false).0
    }
}

/// Held while a request is being answered.
pub struct Answering(Arc<Conn>);

impl Drop for Answering {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.idle_since.store(conn.now(), Ordering::Release);
        conn.answering.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Held while a request's body is still arriving.
pub struct Receiving(Arc<Conn>);

impl Drop for Receiving {
    fn drop(&mut self) {
        self.0.body_since.store(0, Ordering::Release);
    }
}

/// A body that drops `guard` once it has been read (or written) to its end, or dropped.
pub struct Tracked<B, G> {
    inner: B,
    guard: Option<G>,
}

impl<B, G> Tracked<B, G> {
    pub fn new(inner: B, guard: Option<G>) -> Self {
        Tracked { inner, guard }
    }
}

impl<B, G> Body for Tracked<B, G>
where
    B: Body<Data = Bytes> + Unpin,
    G: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) || self.inner.is_end_stream() {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_waiting_connection_is_chosen_never_one_being_answered() {
        let budget = Budget::new(3);
        let answered = budget.try_acquire().expect("free");
        let idle = budget.try_acquire().expect("free");
        let (_busy, _) = answered.conn.answering(false);
        // Nothing has waited long enough yet.
        assert!(!budget.evict_longest_waiting());
        std::thread::sleep(MIN_WAIT + Duration::from_millis(50));
        let sending = budget.try_acquire().expect("free");
        let (_answering, receiving) = sending.conn.answering(true);
        assert!(receiving.is_some());
        assert!(budget.try_acquire().is_none(), "spent");
        assert!(budget.evict_longest_waiting(), "the idle one");
        assert!(idle.conn.evicted.is_cancelled());
        assert!(!answered.conn.evicted.is_cancelled());
        // The body sender has not waited long enough; the answered one never counts.
        assert!(!budget.evict_longest_waiting());
        std::thread::sleep(MIN_WAIT + Duration::from_millis(50));
        assert!(budget.evict_longest_waiting(), "a body still arriving after a second");
        assert!(sending.conn.evicted.is_cancelled());
        assert!(!answered.conn.evicted.is_cancelled());
        drop(idle);
        assert!(budget.try_acquire().is_some(), "its place is free once it is gone");
    }
}
