//! `trale` timers: the seed's example, then `Timer::timeout` and
//! `Timer::interval`.
//!
//! 1. The seed's example: plain `main` (no executor on its thread) calls
//!    `Executor::spawn` twice, which puts both tasks on the process-wide
//!    background executor; each sleeps 2 s, and `main` waits for them with
//!    the blocking `TaskJoiner::join`. The sleeps overlap, so both are done
//!    after about 2 s, not 4.
//! 2. `Timer::timeout` (inside `Executor::block_on`, on `main`'s thread):
//!    around a 50 ms sleep with 500 ms to spare it gives `Ok`; around a
//!    10 s sleep with 100 ms it gives `Err(Elapsed)` after 100 ms, and the
//!    slow future is dropped unfinished.
//! 3. `Timer::interval` with a 100 ms period: tick `n` is scheduled at
//!    `start + n * 100 ms`. After tick 2 the consumer stalls for 250 ms, so
//!    ticks 3 and 4 (already due) come back to back, and tick 5 is on time
//!    again: the schedule does not drift by the stall.
//!
//! `cargo run -p examples --bin trale_timers`
//!
//! Expected output (observed times vary by a millisecond or so):
//!
//! ```text
//! Hello task 1!
//! Hello task 2!
//! seed: both 2 s sleeps joined after 2.00 s (they overlapped; one after the other would take 4 s)
//! timeout: 50 ms sleep within 500 ms -> Ok("fast") after 50 ms
//! timeout: 10 s sleep within 100 ms -> Err(deadline has elapsed) after 100 ms
//! interval: tick 0 scheduled at +0 ms, observed at +0 ms
//! interval: tick 1 scheduled at +100 ms, observed at +100 ms
//! interval: tick 2 scheduled at +200 ms, observed at +200 ms
//! interval: (stalling 250 ms)
//! interval: tick 3 scheduled at +300 ms, observed at +450 ms
//! interval: tick 4 scheduled at +400 ms, observed at +450 ms
//! interval: tick 5 scheduled at +500 ms, observed at +500 ms
//! all timer checks passed
//! ```
//!
//! Exits non-zero if a check fails (the sleeps did not overlap, a timeout
//! came out wrong, or a tick came early or drifted).

use std::error::Error;
use std::time::{Duration, Instant};
use trale::task::Executor;
use trale::timer::Timer;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The seed's example, timed.
fn seed() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();

    let task1 = Executor::spawn(async {
        Timer::sleep(Duration::from_secs(2)).await;
        println!("Hello task 1!");
        1
    });

    let task2 = Executor::spawn(async {
        Timer::sleep(Duration::from_secs(2)).await;
        println!("Hello task 2!");
        2
    });

    assert_eq!(task1.join(), 1);
    assert_eq!(task2.join(), 2);

    let elapsed = started.elapsed();
    println!(
        "seed: both 2 s sleeps joined after {:.2} s (they overlapped; one after the other would \
         take 4 s)",
        elapsed.as_secs_f64()
    );
    if elapsed < Duration::from_secs(2) {
        return Err(format!("the sleeps ended early: {elapsed:?}").into());
    }
    if elapsed >= Duration::from_secs(3) {
        return Err(format!("the sleeps did not overlap: {elapsed:?}").into());
    }
    Ok(())
}

/// `Timer::timeout`, once in time and once too late.
async fn timeouts() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let fast = Timer::timeout(Duration::from_millis(500), async {
        Timer::sleep(Duration::from_millis(50)).await;
        "fast"
    })
    .await;
    let took = started.elapsed();
    println!(
        "timeout: 50 ms sleep within 500 ms -> {fast:?} after {} ms",
        ms(took)
    );
    if fast != Ok("fast") || took < Duration::from_millis(50) || took >= Duration::from_millis(500)
    {
        return Err(format!("fast timeout: {fast:?} after {took:?}").into());
    }

    let started = Instant::now();
    let slow = Timer::timeout(Duration::from_millis(100), async {
        Timer::sleep(Duration::from_secs(10)).await;
        "slow"
    })
    .await;
    let took = started.elapsed();
    match &slow {
        Ok(v) => println!(
            "timeout: 10 s sleep within 100 ms -> Ok({v:?}) after {} ms",
            ms(took)
        ),
        Err(e) => println!(
            "timeout: 10 s sleep within 100 ms -> Err({e}) after {} ms",
            ms(took)
        ),
    }
    if slow.is_ok() || took < Duration::from_millis(100) || took >= Duration::from_secs(1) {
        return Err(format!("slow timeout: {slow:?} after {took:?}").into());
    }
    Ok(())
}

/// `Timer::interval`, with a consumer that falls behind once.
async fn interval() -> Result<(), Box<dyn Error>> {
    const PERIOD: Duration = Duration::from_millis(100);
    const STALL: Duration = Duration::from_millis(250);
    /// How late a tick may be observed (scheduling noise on a busy machine).
    const SLACK: Duration = Duration::from_millis(60);

    let mut ticks = Timer::interval(PERIOD);
    let mut stalled_until = None;
    let mut first = None;
    for n in 0..6u32 {
        let scheduled = ticks.tick().await;
        let observed = Instant::now();
        // Every tick's schedule is computed from the first one, whatever
        // happened in between.
        let origin = *first.get_or_insert(scheduled);
        let sched_off = scheduled - origin;
        let obs_off = observed - origin;
        println!(
            "interval: tick {n} scheduled at +{} ms, observed at +{} ms",
            ms(sched_off),
            ms(obs_off)
        );
        if scheduled != origin + PERIOD * n {
            return Err(format!("tick {n} drifted: scheduled {scheduled:?}").into());
        }
        if observed < scheduled {
            return Err(format!("tick {n} came early").into());
        }
        let due = stalled_until.map_or(scheduled, |s: Instant| s.max(scheduled));
        if observed > due + SLACK {
            return Err(format!("tick {n} came {:?} late", observed - due).into());
        }
        if n == 2 {
            println!("interval: (stalling {} ms)", ms(STALL));
            Timer::sleep(STALL).await;
            stalled_until = Some(Instant::now());
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    seed()?;
    Executor::block_on(async {
        timeouts().await?;
        interval().await
    })?;
    println!("all timer checks passed");
    Ok(())
}
