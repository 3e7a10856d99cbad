//! The threads queries run on: a tokio runtime of its own, apart from the one that serves the
//! API and the federation, so that queries that keep its threads busy leave `/healthz`, the
//! API and the peer-to-peer protocols responsive. Its threads run at a lower scheduling
//! priority and with large stacks; each query is a task bounded by its deadline, cancelled when
//! whoever waits for it goes away, and all of them when the node shuts down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SqlError;

/// Stack of each query thread. DataFusion grows most of its recursion onto the heap when a
/// stack runs low (its `recursive_protection`); this is the margin for what it does not cover
/// (naming, copying and dropping expression trees recurse once per level), with the depth
/// bounded by [`super::guard`]. Address space only: a thread touches the pages it uses.
pub(crate) const STACK_BYTES: usize = 32 << 20;

/// How much lower the query threads' scheduling priority is than the node's other threads
/// (a nice value; Linux sets it per thread).
const NICENESS: i32 = 5;

/// A bounded pool of query threads.
pub struct QueryPool {
    runtime: Option<Runtime>,
    handle: Handle,
    cancel: CancellationToken,
    /// Local queries (the API's) running or waiting at once; a provider's fragments are bounded
    /// by its own slots.
    local: Arc<Semaphore>,
}

impl std::fmt::Debug for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryPool")
            .field("workers", &self.handle.metrics().num_workers())
            .finish()
    }
}

impl QueryPool {
    /// A pool of `threads` threads (0: one per core) that runs at most `local` local queries
    /// at once.
    pub fn new(threads: usize, local: usize) -> Result<Self, SqlError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(threads * 8)
            .thread_name("allmende-query")
            .thread_stack_size(STACK_BYTES)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| SqlError::Internal(format!("starting the query threads: {e}")))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            cancel: CancellationToken::new(),
            local: Arc::new(Semaphore::new(local.max(1))),
        })
    }

    /// Runs `work` on the pool, in the caller's tracing span, until `deadline`; `limit` names
    /// the time limit in the error. The returned future cancels the work when it is dropped.
    pub fn spawn<T, F>(&self, deadline: Instant, limit: Duration, work: F) -> Running<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, SqlError>> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        // The work stays in the caller's span (a request, a federated query).
        let work = tracing::Instrument::instrument(work, tracing::Span::current());
        let handle = self.handle.spawn(async move {
            tokio::select! {
                done = tokio::time::timeout_at(deadline, work) => {
                    done.unwrap_or(Err(SqlError::Timeout(limit)))
                }
                () = cancel.cancelled() => Err(SqlError::Cancelled),
            }
        });
        Running { handle }
    }

    /// Waits, at most until `deadline`, for one of the slots of local queries.
    pub async fn local_slot(
        &self,
        deadline: Instant,
        limit: Duration,
    ) -> Result<OwnedSemaphorePermit, SqlError> {
        match tokio::time::timeout_at(deadline, self.local.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(SqlError::Cancelled),
            Err(_) => Err(SqlError::Timeout(limit)),
        }
    }

    /// Cancels every query running or waiting, and every later one: the node shuts down.
    pub fn cancel_all(&self) {
        self.cancel.cancel();
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(runtime) = self.runtime.take() {
            // Allowed from within a runtime too; what still runs is cancelled at its next yield.
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's scheduling priority by [`NICENESS`].
fn lower_priority() {
    // SAFETY: gettid and setpriority take no pointers; on failure the thread keeps its
    // priority, which is only less fair, not wrong.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICENESS);
    }
}

/// A query running on the pool; dropping it cancels the query.
pub struct Running<T> {
    handle: JoinHandle<Result<T, SqlError>>,
}

impl<T> Future for Running<T> {
    type Output = Result<T, SqlError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.handle)
            .poll(cx)
            .map(|joined| match joined {
                Ok(result) => result,
                Err(e) if e.is_cancelled() => Err(SqlError::Cancelled),
                Err(e) => {
                    let message = e
                        .try_into_panic()
                        .ok()
                        .and_then(|p| {
                            p.downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        })
                        .unwrap_or_default();
                    Err(SqlError::Internal(format!("the query panicked: {message}")))
                }
            })
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_query_past_its_deadline_ends_with_the_limit_named() {
        let pool = QueryPool::new(1, 1).unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        let never = pool.spawn(deadline, Duration::from_secs(7), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        assert!(matches!(never.await, Err(SqlError::Timeout(d)) if d.as_secs() == 7));
    }

    #[tokio::test]
    async fn dropping_a_running_query_cancels_it() {
        let pool = QueryPool::new(1, 1).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let far = Instant::now() + Duration::from_secs(60);
        let running = pool.spawn(far, Duration::from_secs(60), async move {
            let _tx = tx;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        drop(running);
        // The task and what it holds are dropped: the channel closes.
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("cancelled")
            .unwrap_err();
    }

    #[tokio::test]
    async fn cancel_all_ends_running_queries_and_refuses_new_ones() {
        let pool = QueryPool::new(1, 1).unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let running = pool.spawn(far, Duration::from_secs(60), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        pool.cancel_all();
        assert!(matches!(running.await, Err(SqlError::Cancelled)));
        let later = pool.spawn(far, Duration::from_secs(60), async { Ok(()) });
        // Either outcome is possible for a task that is ready at once, but none waits.
        let _ = tokio::time::timeout(Duration::from_secs(5), later)
            .await
            .expect("does not wait");
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_crash() {
        let pool = QueryPool::new(1, 1).unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let running = pool.spawn::<(), _>(far, Duration::from_secs(60), async { panic!("boom") });
        match running.await {
            Err(SqlError::Internal(m)) => assert!(m.contains("boom"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
