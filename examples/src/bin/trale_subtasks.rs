//! `trale` sub-tasks: tasks that spawn tasks, await their joiners, catch a
//! sub-task's panic, and abort one.
//!
//! 1. A parent task on the background executor (`Executor::spawn` from plain
//!    `main`) spawns five `Send` sub-tasks with `Executor::spawn` (they
//!    finish in reverse order; the parent awaits them in order), then one
//!    `!Send` sub-task with `Executor::spawn_local`, which shares an
//!    `Rc<RefCell<Vec<_>>>` log with three `spawn_local` sub-sub-tasks that
//!    take turns with `yield_now`. The `Rc` never leaves the executor's
//!    thread, and the parent stays `Send` because it only holds the
//!    joiner.
//! 2. A sub-task panics (it parses "eighty" as a port number): the parent
//!    gets the payload from `.result().await`, and `main`, for another one,
//!    from the blocking `try_join`; the executor and its other tasks go on.
//!    Rust's panic hook prints the two panic messages to stderr as they
//!    happen: they are expected.
//! 3. `abort()`: the parent aborts a sub-task asleep for 10 s, and `main`
//!    aborts one that ticks an interval forever. Each joiner reports
//!    `Cancelled` at once, and each future's destructor has run (a guard in
//!    it sets a flag).
//! 4. On `main`'s own thread: `Executor::block_on_all` runs detached
//!    `spawn_local` tasks to completion after its future returns, while
//!    `Executor::block_on` drops them when its future returns.
//!
//! `cargo run -p examples --bin trale_subtasks`
//!
//! Expected output on stdout (a second or less; the two panic messages and
//! their notes go to stderr):
//!
//! ```text
//! 1. sub-task 5 done
//!    sub-task 4 done
//!    sub-task 3 done
//!    sub-task 2 done
//!    sub-task 1 done
//!    sum of squares 1..=5 from 5 Send sub-tasks: 55
//!    spawn_local log (task, round): [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]; Rc count back to 1
//! 2. parent caught: not a port number: ParseIntError { kind: InvalidDigit }
//!    main caught with try_join: task panicked: not a port number: ParseIntError { kind: InvalidDigit }
//!    the executor goes on: a new task returned 42
//! 3. parent aborted its sleeper: JoinError::Cancelled, destructor ran: true
//!    main aborted the ticker after 3+ ticks: JoinError::Cancelled, destructor ran: true
//! 4. block_on_all ran 3 of 3 detached tasks; block_on ran 0 of 3 (the rest were dropped, Rc count back to 1)
//! all sub-task checks passed
//! ```
//!
//! Exits non-zero if a check fails.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::error::Error;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use trale::task::{Executor, JoinError, TaskJoiner, yield_now};
use trale::timer::Timer;

/// Sets its flag when dropped: shows that a future's destructor ran.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A bug waiting to happen: panics on anything but a number.
fn parse_port(s: &str) -> u16 {
    s.parse().expect("not a port number")
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)")
}

/// A join outcome, for printing.
fn shown<T: std::fmt::Debug>(outcome: &Result<T, JoinError>) -> String {
    match outcome {
        Ok(value) => format!("Ok({value:?})"),
        Err(e) => format!("{e:?}"),
    }
}

/// What the parent task found, for `main` to check.
struct ParentReport {
    sum: u64,
    log: Vec<(u32, u32)>,
    rc_count: usize,
    caught: Option<String>,
    aborted: Result<&'static str, JoinError>,
    sleeper_dropped: bool,
}

/// Part 1's `!Send` sub-task: three sub-sub-tasks share an `Rc` log.
async fn local_log() -> (Vec<(u32, u32)>, usize) {
    let log = Rc::new(RefCell::new(Vec::new()));
    let children: Vec<TaskJoiner<()>> = (0..3)
        .map(|task| {
            let log = Rc::clone(&log);
            Executor::spawn_local(async move {
                for round in 0..2 {
                    log.borrow_mut().push((task, round));
                    yield_now().await;
                }
            })
        })
        .collect();
    for child in children {
        child.await;
    }
    let entries = log.borrow().clone();
    // The children's futures (and their clones of `log`) are gone.
    (entries, Rc::strong_count(&log))
}

/// The parent task of parts 1 to 3.
async fn parent() -> ParentReport {
    // Part 1: Send sub-tasks, awaited in spawn order.
    let squares: Vec<TaskJoiner<u64>> = (1..=5u64)
        .map(|i| {
            Executor::spawn(async move {
                Timer::sleep(Duration::from_millis(10 * (6 - i))).await;
                println!("{} sub-task {i} done", if i == 5 { "1." } else { "  " });
                i * i
            })
        })
        .collect();
    let mut sum = 0;
    for square in squares {
        sum += square.await;
    }
    // A `!Send` sub-task: its joiner is `Send`, so `parent` stays `Send`.
    let (log, rc_count) = Executor::spawn_local(local_log()).await;

    // Part 2: a panicking sub-task.
    let bad = Executor::spawn(async {
        Timer::sleep(Duration::from_millis(5)).await;
        parse_port("eighty")
    });
    let caught = match bad.result().await {
        Ok(port) => {
            println!("unexpected: the sub-task returned {port}");
            None
        }
        Err(e) => e.into_panic().map(|p| panic_text(p.as_ref()).to_owned()),
    };

    // Part 3: abort a sleeping sub-task.
    let sleeper_dropped = Arc::new(AtomicBool::new(false));
    let guard = SetOnDrop(Arc::clone(&sleeper_dropped));
    let sleeper = Executor::spawn(async move {
        let _guard = guard;
        Timer::sleep(Duration::from_secs(10)).await;
        "woke up"
    });
    // Let it start and park on its timer first.
    Timer::sleep(Duration::from_millis(20)).await;
    sleeper.abort();
    let aborted = sleeper.result().await;

    ParentReport {
        sum,
        log,
        rc_count,
        caught,
        aborted,
        sleeper_dropped: sleeper_dropped.load(Ordering::SeqCst),
    }
}

/// Parts 1 to 3, checked.
fn background() -> Result<(), Box<dyn Error>> {
    let report = Executor::spawn(parent()).join();

    println!(
        "   sum of squares 1..=5 from 5 Send sub-tasks: {}",
        report.sum
    );
    if report.sum != 55 {
        return Err("wrong sum".into());
    }
    println!(
        "   spawn_local log (task, round): {:?}; Rc count back to {}",
        report.log, report.rc_count
    );
    // `yield_now` sends a task to the back of the run queue: they alternate.
    if report.log != [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)] || report.rc_count != 1 {
        return Err("the spawn_local sub-tasks did not take turns, or leaked the Rc".into());
    }

    match &report.caught {
        Some(msg) => println!("2. parent caught: {msg}"),
        None => return Err("the parent did not catch the sub-task's panic".into()),
    }
    let outcome = Executor::spawn(async { parse_port("eighty") }).try_join();
    match outcome {
        Err(e) if e.is_panic() => println!("   main caught with try_join: {e}"),
        other => return Err(format!("try_join gave {other:?}, not a panic").into()),
    }
    let after = Executor::spawn(async { 42 }).join();
    println!("   the executor goes on: a new task returned {after}");

    println!(
        "3. parent aborted its sleeper: {}, destructor ran: {}",
        shown(&report.aborted),
        report.sleeper_dropped
    );
    if !matches!(report.aborted, Err(JoinError::Cancelled)) || !report.sleeper_dropped {
        return Err("the aborted sub-task was not cancelled and dropped".into());
    }

    // Abort from another thread: `main` is not the executor's thread.
    let ticks = Arc::new(AtomicU32::new(0));
    let ticker_dropped = Arc::new(AtomicBool::new(false));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        let guard = SetOnDrop(Arc::clone(&ticker_dropped));
        Executor::spawn(async move {
            let _guard = guard;
            let mut interval = Timer::interval(Duration::from_millis(5));
            loop {
                interval.tick().await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Bounded: wait for a few ticks, at most a second.
    for _ in 0..200 {
        if ticks.load(Ordering::SeqCst) >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if ticks.load(Ordering::SeqCst) < 3 || ticker.is_finished() {
        return Err("the ticker did not tick".into());
    }
    ticker.abort();
    let outcome: Result<(), JoinError> = ticker.try_join();
    let dropped = ticker_dropped.load(Ordering::SeqCst);
    println!(
        "   main aborted the ticker after 3+ ticks: {}, destructor ran: {dropped}",
        shown(&outcome)
    );
    if !matches!(outcome, Err(JoinError::Cancelled)) || !dropped {
        return Err("the aborted ticker was not cancelled and dropped".into());
    }
    Ok(())
}

/// Spawns three detached `spawn_local` tasks that each bump `done`.
async fn spawn_detached(done: &Rc<Cell<u32>>) {
    for i in 0..3u64 {
        let done = Rc::clone(done);
        // Dropping the joiner detaches the task.
        drop(Executor::spawn_local(async move {
            Timer::sleep(Duration::from_millis(10 * (i + 1))).await;
            done.set(done.get() + 1);
        }));
    }
}

/// Part 4, on this thread.
fn local_executors() -> Result<(), Box<dyn Error>> {
    let done = Rc::new(Cell::new(0));
    Executor::block_on_all(spawn_detached(&done));
    let all = done.get();

    let done = Rc::new(Cell::new(0));
    Executor::block_on(spawn_detached(&done));
    let some = done.get();
    let rc_count = Rc::strong_count(&done);

    println!(
        "4. block_on_all ran {all} of 3 detached tasks; block_on ran {some} of 3 (the rest were \
         dropped, Rc count back to {rc_count})"
    );
    if all != 3 || some != 0 || rc_count != 1 {
        return Err("block_on_all / block_on did not run or drop the detached tasks".into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    background()?;
    local_executors()?;
    println!("all sub-task checks passed");
    Ok(())
}
