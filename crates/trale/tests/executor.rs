//! Executor-only behaviour (no sockets): these also run under Miri.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use trale::task::{Executor, JoinError, PanicPayload, TaskJoiner, yield_now};
use trale::timer::Timer;

/// A future that counts its polls and parks its waker where a test can
/// reach it.
#[derive(Default)]
struct Probe {
    polls: AtomicUsize,
    waker: Mutex<Option<Waker>>,
    done: AtomicBool,
}

impl Probe {
    fn wait(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let probe = self.clone();
        poll_fn(move |cx| {
            probe.polls.fetch_add(1, Ordering::SeqCst);
            *probe.waker.lock().unwrap() = Some(cx.waker().clone());
            if probe.done.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn waker(&self) -> Waker {
        self.waker
            .lock()
            .unwrap()
            .clone()
            .expect("polled at least once")
    }
}

#[test]
fn woken_twice_before_a_poll_is_polled_once() {
    let _dog = testkit::watchdog("woken_twice_before_a_poll_is_polled_once");
    let probe = Arc::new(Probe::default());
    Executor::block_on(async {
        let task = Executor::spawn(probe.wait());
        yield_now().await;
        assert_eq!(probe.polls.load(Ordering::SeqCst), 1);
        let waker = probe.waker();
        waker.wake_by_ref();
        waker.wake_by_ref();
        waker.wake();
        yield_now().await;
        yield_now().await;
        assert_eq!(
            probe.polls.load(Ordering::SeqCst),
            2,
            "three wakes, one poll"
        );
        probe.done.store(true, Ordering::SeqCst);
        probe.waker().wake();
        task.await;
    });
}

#[test]
fn wake_after_completion_abort_or_shutdown_is_a_no_op() {
    let _dog = testkit::watchdog("wake_after_completion_abort_or_shutdown_is_a_no_op");
    let done = Arc::new(Probe::default());
    let aborted = Arc::new(Probe::default());
    let stranded = Arc::new(Probe::default());
    Executor::block_on(async {
        let a = Executor::spawn(done.wait());
        let b = Executor::spawn(aborted.wait());
        let _c = Executor::spawn(stranded.wait());
        yield_now().await;
        done.done.store(true, Ordering::SeqCst);
        done.waker().wake();
        a.await;
        b.abort();
        assert!(b.result().await.unwrap_err().is_cancelled());
        // Completed and aborted: their wakers do nothing now.
        done.waker().wake();
        aborted.waker().wake();
        yield_now().await;
        assert_eq!(done.polls.load(Ordering::SeqCst), 2);
        assert_eq!(aborted.polls.load(Ordering::SeqCst), 1);
    });
    // The executor is gone: the stranded task's waker does nothing, from
    // this thread or another.
    let waker = stranded.waker();
    waker.wake_by_ref();
    std::thread::spawn(move || waker.wake()).join().unwrap();
    assert_eq!(stranded.polls.load(Ordering::SeqCst), 1);
}

/// A plain thread wakes the executor just as it decides to sleep; repeated
/// until a lost wake-up would have hung (the watchdog fails a hang).
#[test]
fn cross_thread_wake_while_going_to_sleep_is_never_lost() {
    let _dog = testkit::watchdog("cross_thread_wake_while_going_to_sleep_is_never_lost");
    let rounds = if cfg!(miri) { 20 } else { 5_000 };
    Executor::block_on(async {
        for _ in 0..rounds {
            let flag = Arc::new(AtomicBool::new(false));
            let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
            let (flag2, slot2) = (flag.clone(), slot.clone());
            let waker_thread = std::thread::spawn(move || {
                // Wait for the waker to be published, then wake at once.
                loop {
                    if let Some(w) = slot2.lock().unwrap().take() {
                        flag2.store(true, Ordering::SeqCst);
                        w.wake();
                        return;
                    }
                    std::thread::yield_now();
                }
            });
            poll_fn(|cx| {
                if flag.load(Ordering::SeqCst) {
                    return Poll::Ready(());
                }
                *slot.lock().unwrap() = Some(cx.waker().clone());
                if flag.load(Ordering::SeqCst) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            waker_thread.join().unwrap();
        }
    });
}

/// The same from a spawned task's waker (the inject queue, not the main
/// future's flag).
#[test]
fn cross_thread_task_wake_is_never_lost() {
    let _dog = testkit::watchdog("cross_thread_task_wake_is_never_lost");
    let rounds = if cfg!(miri) { 10 } else { 2_000 };
    Executor::block_on(async {
        for _ in 0..rounds {
            let probe = Arc::new(Probe::default());
            let task = Executor::spawn(probe.wait());
            while probe.polls.load(Ordering::SeqCst) == 0 {
                yield_now().await;
            }
            let p = probe.clone();
            let t = std::thread::spawn(move || {
                p.done.store(true, Ordering::SeqCst);
                p.waker().wake();
            });
            task.await;
            t.join().unwrap();
        }
    });
}

#[test]
fn join_returns_values_and_reraises_the_original_panic() {
    let _dog = testkit::watchdog("join_returns_values_and_reraises_the_original_panic");
    Executor::block_on(async {
        let ok = Executor::spawn(async { 41 + 1 });
        let bad = Executor::spawn(async {
            if true {
                std::panic::panic_any(String::from("boom 7"));
            }
        });
        let after = Executor::spawn(async { "still running" });
        assert_eq!(ok.await, 42);
        let err = bad.result().await.unwrap_err();
        assert!(err.is_panic());
        assert_eq!(err.to_string(), "task panicked: boom 7");
        assert_eq!(
            *err.into_panic().unwrap().downcast::<String>().unwrap(),
            "boom 7"
        );
        assert_eq!(after.await, "still running");
    });
}

/// A `JoinError` is `Send + Sync`, as tokio's is: it goes into
/// `Box<dyn Error + Send + Sync>` with `?` (it did not while the payload
/// was a bare `Box<dyn Any + Send>`), keeps its message there, and still
/// hands the original payload back.
#[test]
fn a_join_error_goes_into_a_send_sync_error_box() {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let _dog = testkit::watchdog("a_join_error_goes_into_a_send_sync_error_box");
    async fn joined(task: TaskJoiner<u8>) -> Result<u8, BoxError> {
        Ok(task.result().await?)
    }
    Executor::block_on(async {
        let task = Executor::spawn(async {
            if true {
                std::panic::panic_any(String::from("boom 8"));
            }
            0u8
        });
        let err = joined(task).await.unwrap_err();
        assert_eq!(err.to_string(), "task panicked: boom 8");
        let err = err.downcast::<JoinError>().expect("the JoinError itself");
        let JoinError::Panicked(payload) = *err else {
            panic!("not a panic: {err:?}");
        };
        assert_eq!(payload.message().as_deref(), Some("boom 8"));
        let again = JoinError::Panicked(PanicPayload::from(Box::new("by hand") as Box<_>));
        assert_eq!(again.to_string(), "task panicked: by hand");
        assert_eq!(
            *payload.into_inner().downcast::<String>().unwrap(),
            "boom 8"
        );
    });
}

/// Miri rejects a process whose threads outlive `main`; the background
/// executor thread never ends, so tests that start it skip Miri.
#[test]
#[cfg_attr(
    miri,
    ignore = "starts the background executor thread, which outlives the test"
)]
fn blocking_join_on_the_background_executor_reraises_the_panic() {
    let _dog = testkit::watchdog("blocking_join_on_the_background_executor_reraises_the_panic");
    let ok = Executor::spawn(async { 6 * 7 });
    assert_eq!(ok.join(), 42);
    let task = Executor::spawn(async { std::panic::panic_any(13_u32) });
    let payload = catch_unwind(AssertUnwindSafe(|| task.join())).unwrap_err();
    assert_eq!(*payload.downcast::<u32>().unwrap(), 13);
}

#[test]
fn awaiting_a_joiner_reraises_the_task_panic() {
    let _dog = testkit::watchdog("awaiting_a_joiner_reraises_the_task_panic");
    let caught = catch_unwind(|| {
        Executor::block_on(async {
            Executor::spawn(async { std::panic::panic_any(5_i64) }).await;
        })
    });
    assert_eq!(*caught.unwrap_err().downcast::<i64>().unwrap(), 5);
}

struct RecordDrop {
    thread: Arc<Mutex<Option<std::thread::ThreadId>>>,
    panic: bool,
}

impl Drop for RecordDrop {
    fn drop(&mut self) {
        *self.thread.lock().unwrap() = Some(std::thread::current().id());
        if self.panic {
            panic!("destructor panics");
        }
    }
}

#[test]
fn abort_from_another_thread_drops_the_future_on_the_owning_thread() {
    let _dog = testkit::watchdog("abort_from_another_thread_drops_the_future_on_the_owning_thread");
    let dropped_on = Arc::new(Mutex::new(None));
    let guard = RecordDrop {
        thread: dropped_on.clone(),
        panic: false,
    };
    let owner = std::thread::current().id();
    Executor::block_on(async {
        let task = Executor::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        yield_now().await;
        let task = std::thread::spawn(move || {
            task.abort();
            task
        })
        .join()
        .unwrap();
        assert!(matches!(task.result().await, Err(JoinError::Cancelled)));
    });
    assert_eq!(*dropped_on.lock().unwrap(), Some(owner));
}

#[test]
fn a_panicking_destructor_is_caught_like_a_panicking_poll() {
    let _dog = testkit::watchdog("a_panicking_destructor_is_caught_like_a_panicking_poll");
    let dropped_on = Arc::new(Mutex::new(None));
    let guard = RecordDrop {
        thread: dropped_on.clone(),
        panic: true,
    };
    Executor::block_on(async {
        let task = Executor::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        let bystander = Executor::spawn(async {
            yield_now().await;
            yield_now().await;
            9
        });
        yield_now().await;
        task.abort();
        let err = task.result().await.unwrap_err();
        assert_eq!(err.to_string(), "task panicked: destructor panics");
        assert_eq!(bystander.await, 9, "the other tasks go on");
    });
    assert!(dropped_on.lock().unwrap().is_some());
}

#[test]
fn tasks_left_when_block_on_returns_are_dropped_there_and_report_cancelled() {
    let _dog = testkit::watchdog("tasks_left_when_block_on_returns_are_dropped_there");
    let dropped_on = Arc::new(Mutex::new(None));
    let guard = RecordDrop {
        thread: dropped_on.clone(),
        panic: true,
    };
    // The joiner leaves `block_on` un-awaited on purpose.
    #[allow(clippy::async_yields_async)]
    let joiner: TaskJoiner<()> = Executor::block_on(async move {
        Executor::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        })
    });
    assert_eq!(
        *dropped_on.lock().unwrap(),
        Some(std::thread::current().id())
    );
    assert!(joiner.is_finished());
    // Its destructor panicked: reported as a panic, not lost.
    assert!(joiner.try_join().unwrap_err().is_panic());
}

#[test]
fn block_on_all_waits_for_every_task() {
    let _dog = testkit::watchdog("block_on_all_waits_for_every_task");
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let v = Executor::block_on_all(async move {
        for _ in 0..10 {
            let c = c.clone();
            drop(Executor::spawn(async move {
                for _ in 0..5 {
                    yield_now().await;
                }
                c.fetch_add(1, Ordering::SeqCst);
            }));
        }
        "main done"
    });
    assert_eq!(v, "main done");
    assert_eq!(count.load(Ordering::SeqCst), 10);
}

#[test]
fn nested_block_on_panics_with_a_message() {
    let _dog = testkit::watchdog("nested_block_on_panics_with_a_message");
    let err =
        catch_unwind(|| Executor::block_on(async { Executor::block_on(async {}) })).unwrap_err();
    let msg = err
        .downcast_ref::<&str>()
        .copied()
        .map(String::from)
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(
        msg.contains("block_on called inside a running trale executor"),
        "{msg}"
    );
    // And inside a task: the task fails with that panic, the executor goes on.
    Executor::block_on(async {
        let err = Executor::spawn(async { Executor::block_on(async { 1 }) })
            .result()
            .await
            .unwrap_err();
        assert!(err.to_string().contains(".await"), "{err}");
    });
}

#[test]
fn blocking_join_inside_the_same_executor_panics_instead_of_hanging() {
    let _dog = testkit::watchdog("blocking_join_inside_the_same_executor_panics");
    Executor::block_on(async {
        let inner = Executor::spawn(async { 3 });
        let err = catch_unwind(AssertUnwindSafe(|| inner.join())).unwrap_err();
        let msg = err
            .downcast_ref::<&str>()
            .copied()
            .map(String::from)
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap();
        assert!(msg.contains("Use `.await`"), "{msg}");
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "starts the background executor thread, which outlives the test"
)]
fn blocking_join_inside_the_background_executor_panics_instead_of_hanging() {
    let _dog = testkit::watchdog("blocking_join_inside_the_background_executor_panics");
    // Inside a task of the background executor, joining another of its
    // tasks.
    let outcome = Executor::spawn(async {
        let sibling = Executor::spawn(async { 1 });
        catch_unwind(AssertUnwindSafe(|| sibling.join())).is_err()
    })
    .join();
    assert!(
        outcome,
        "joining a sibling on the background executor must panic"
    );
}

#[test]
fn spawn_local_runs_not_send_futures_on_this_thread() {
    let _dog = testkit::watchdog("spawn_local_runs_not_send_futures_on_this_thread");
    let shared = Rc::new(Cell::new(0));
    let s = shared.clone();
    Executor::block_on(async move {
        let a = Executor::spawn_local(async move {
            yield_now().await;
            s.set(s.get() + 1);
            Rc::new(5)
        });
        assert_eq!(*a.await, 5);
    });
    assert_eq!(shared.get(), 1);
    let err = catch_unwind(|| Executor::spawn_local(async {})).unwrap_err();
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap();
    assert!(msg.contains("outside an executor"), "{msg}");
}

#[test]
fn block_on_accepts_borrowing_non_send_futures() {
    let local = Rc::new(Cell::new(1));
    let borrowed = &local;
    let v = Executor::block_on(async {
        yield_now().await;
        borrowed.set(2);
        borrowed.get()
    });
    assert_eq!(v, 2);
}

#[test]
fn timers_fire_in_deadline_order() {
    let _dog = testkit::watchdog("timers_fire_in_deadline_order");
    let order = Arc::new(Mutex::new(Vec::new()));
    // One base for every deadline, far enough ahead that all are registered
    // before the first is due (Miri's clock runs fast against its speed).
    let lead = Duration::from_millis(if cfg!(miri) { 5_000 } else { 20 });
    let base = std::time::Instant::now() + lead;
    Executor::block_on_all(async {
        // Registered out of order; some share a deadline.
        for ms in [30_u64, 10, 20, 0, 10, 40, 5] {
            let order = order.clone();
            drop(Executor::spawn(async move {
                Timer::sleep_until(base + Duration::from_millis(ms)).await;
                order.lock().unwrap().push(ms);
            }));
        }
    });
    assert_eq!(*order.lock().unwrap(), vec![0, 5, 10, 10, 20, 30, 40]);
}

/// Deadlines that all come due while the executor is busy are woken in
/// deadline order within one turn of the reactor.
#[test]
fn timers_due_in_the_same_turn_fire_in_deadline_order() {
    let _dog = testkit::watchdog("timers_due_in_the_same_turn_fire_in_deadline_order");
    let order = Arc::new(Mutex::new(Vec::new()));
    let base =
        std::time::Instant::now() + Duration::from_millis(if cfg!(miri) { 5_000 } else { 20 });
    Executor::block_on_all(async {
        for us in [300_u64, 100, 200, 0, 500, 400] {
            let order = order.clone();
            drop(Executor::spawn(async move {
                Timer::sleep_until(base + Duration::from_micros(us)).await;
                order.lock().unwrap().push(us);
            }));
        }
        // Let every task register, then keep the thread busy past the last
        // deadline: all six are due when the reactor next looks.
        for _ in 0..3 {
            yield_now().await;
        }
        assert_eq!(trale::diagnostics::pending_timers(), Some(6));
        let late = base + Duration::from_millis(2);
        while std::time::Instant::now() < late {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    assert_eq!(*order.lock().unwrap(), vec![0, 100, 200, 300, 400, 500]);
}

#[test]
fn timeout_and_interval() {
    let _dog = testkit::watchdog("timeout_and_interval");
    Executor::block_on(async {
        let quick = Timer::timeout(Duration::from_secs(30), async { 7 }).await;
        assert_eq!(quick, Ok(7));
        let slow = Timer::timeout(Duration::from_millis(5), std::future::pending::<()>()).await;
        assert!(slow.is_err());
        assert_eq!(slow.unwrap_err().to_string(), "deadline has elapsed");
        let mut every = Timer::interval(Duration::from_millis(3));
        let first = every.tick().await;
        let mut last = first;
        for n in 1..=4u32 {
            last = every.tick().await;
            // Scheduled times, not observed ones: no drift.
            assert_eq!(last - first, Duration::from_millis(3) * n);
        }
        assert!(std::time::Instant::now() >= last);
    });
}

#[test]
fn a_sleep_whose_executor_ended_starts_over_on_the_next() {
    let _dog = testkit::watchdog("a_sleep_whose_executor_ended_starts_over");
    let mut sleep = Box::pin(Timer::sleep(Duration::from_millis(20)));
    Executor::block_on(async {
        let pending = poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_pending())).await;
        assert!(pending);
    });
    Executor::block_on(sleep);
}

#[test]
fn a_timer_outside_an_executor_panics_with_a_message() {
    let mut sleep = Timer::sleep(Duration::from_secs(5));
    let err = catch_unwind(AssertUnwindSafe(|| {
        let mut cx = Context::from_waker(Waker::noop());
        let _ = Pin::new(&mut sleep).poll(&mut cx);
    }))
    .unwrap_err();
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap();
    assert!(msg.contains("outside a trale executor"), "{msg}");
}

/// A task that yields forever does not starve a timer or other tasks.
#[test]
fn a_yielding_hog_does_not_starve_timers_or_tasks() {
    let _dog = testkit::watchdog("a_yielding_hog_does_not_starve_timers_or_tasks");
    Executor::block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let hog = Executor::spawn(async move {
            let mut spins = 0u64;
            while !s.load(Ordering::SeqCst) {
                yield_now().await;
                spins += 1;
            }
            spins
        });
        Timer::sleep(Duration::from_millis(10)).await;
        let other = Executor::spawn(async { 5 });
        assert_eq!(other.await, 5);
        stop.store(true, Ordering::SeqCst);
        assert!(hog.await > 0);
    });
}

/// A task that never yields at all (a busy future that wakes itself) is
/// polled in turn with the others: the loop never runs one task twice in a
/// row while others are ready.
#[test]
fn ready_tasks_run_in_turn() {
    let log = Arc::new(Mutex::new(Vec::new()));
    Executor::block_on_all(async {
        for id in 0..3 {
            let log = log.clone();
            drop(Executor::spawn(async move {
                for _ in 0..3 {
                    log.lock().unwrap().push(id);
                    yield_now().await;
                }
            }));
        }
    });
    assert_eq!(*log.lock().unwrap(), vec![0, 1, 2, 0, 1, 2, 0, 1, 2]);
}

#[test]
fn a_joiner_waker_that_panics_does_not_break_the_executor() {
    use testkit::{HostileWaker, Misbehaviour};
    let _dog = testkit::watchdog("a_joiner_waker_that_panics_does_not_break_the_executor");
    Executor::block_on(async {
        let mut task = Box::pin(Executor::spawn(async {
            yield_now().await;
            11
        }));
        let other = Executor::spawn(async { 12 });
        // The joiner's stored waker panics when the task completes and wakes
        // it; its clone is a new pointer every time.
        let hostile = HostileWaker::new(Misbehaviour::PanicOnWake);
        let waker = hostile.waker();
        assert!(
            task.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        for _ in 0..4 {
            yield_now().await;
        }
        assert_eq!(hostile.wakes(), 1, "the completion woke the joiner once");
        hostile.disarm();
        assert_eq!(other.await, 12, "the executor went on");
        assert_eq!(task.await, 11, "the value was not lost");
    });
}
