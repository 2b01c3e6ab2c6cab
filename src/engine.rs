//! Where queries run: DataFusion, on threads of its own with deep stacks.
//!
//! DataFusion plans, optimises, evaluates and drops expressions by recursion, one stack frame
//! (tens of KiB in a debug build) per level: a deep expression overflows a 2 MiB thread stack
//! and aborts the process (Rust cannot catch a stack overflow), taking a scheduler and all its
//! runs with it. So every query is planned, run and dropped on this runtime, whose threads
//! reserve [`STACK`] (address space: only the pages a query reaches are touched), whatever
//! runtime the caller is on (the binary's, a test's, the scheduler's). Long `AND`/`OR` chains
//! are balanced before planning (`segment::balance`), and what is still deeper than
//! [`MAX_DEPTH`] is refused with a clear error, so no query nears the end of the stack or
//! plans for minutes.

use std::future::Future;
use std::sync::OnceLock;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::prelude::DataFrame;
use futures::{Stream, StreamExt};
use tokio::runtime::Runtime;

/// Stack of each engine thread.
pub const STACK: usize = 256 * 1024 * 1024;

/// The deepest expression a segment may hold once its `AND`/`OR` chains are balanced. Other
/// chains (`a || b || ...`, `a + b + ...`) plan in time that grows with the square of their
/// depth: at this depth, well under a second in a release build; on the stack, a few
/// dozen MiB at most.
pub const MAX_DEPTH: usize = 1_000;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("cm-export-engine")
            .thread_stack_size(STACK)
            // Blocking threads (file reads) get the same stack: keep their number modest.
            .max_blocking_threads(16)
            .enable_all()
            .build()
            // Without a runtime nothing can run; this fails only when threads cannot be made.
            .unwrap_or_else(|e| panic!("cannot start the query engine's threads: {e}"))
    })
}

/// Runs `work` on the engine and waits for it. A panic in `work` is resumed here.
pub async fn run<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    match runtime().spawn(work).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // The runtime is never shut down, so its tasks are never cancelled.
            Err(error) => panic!("a query task ended without an answer: {error}"),
        },
    }
}

/// Executes the query `frame` picks out of `owner` on the engine, and hands its batches over
/// as they come; at most a couple wait in between, so the scan goes no faster than its
/// reader. `owner` is dropped on the engine when the scan ends.
pub fn stream<T: Send + 'static>(
    owner: OnEngine<T>,
    frame: impl FnOnce(&T) -> DataFrame + Send + 'static,
) -> impl Stream<Item = Result<RecordBatch, DataFusionError>> + Send + Unpin {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    runtime().spawn(async move {
        let owner = owner.into_inner();
        let frame = frame(&owner);
        let mut batches = match frame.execute_stream().await {
            Ok(batches) => batches,
            Err(error) => {
                let _ = tx.send(Err(error)).await;
                return;
            }
        };
        while let Some(batch) = batches.next().await {
            if tx.send(batch).await.is_err() {
                // The reader is gone: stop scanning.
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|batch| (batch, rx)) }).boxed()
}

/// Holds a value that owns query plans, and drops it on the engine: dropping a deep
/// expression recurses as deeply as planning it did.
pub struct OnEngine<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> OnEngine<T> {
    pub fn new(value: T) -> Self {
        Self(Some(value))
    }

    pub fn get(&self) -> &T {
        // Only `drop` and `into_inner` take the value out, and both consume `self`.
        self.0.as_ref().unwrap_or_else(|| unreachable!("taken only on drop"))
    }

    /// The value, to be used (and dropped) on the engine.
    pub fn into_inner(mut self) -> T {
        self.0.take().unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl<T: Send + 'static> Drop for OnEngine<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            runtime().spawn(async move { drop(value) });
        }
    }
}
