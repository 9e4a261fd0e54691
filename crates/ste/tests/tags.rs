//! Pitfalls: tags are unique for the life of the process, and a value
//! tagged by a joined worker never passes the check on a later one.

mod common;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

#[test]
#[cfg_attr(miri, ignore)]
fn tags_are_unique_over_10_000_threads() {
    let _w = common::watchdog("tags_are_unique_over_10_000_threads");
    let seen = Mutex::new(HashSet::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..5_000 {
                    let thread = ste::Thread::new().unwrap();
                    // The tag the worker reports for itself is its handle's.
                    let inside = thread.submit(ste::Tag::current).unwrap();
                    assert_eq!(inside, Some(thread.tag()));
                    assert!(seen.lock().unwrap().insert(thread.tag()), "tag reused");
                    thread.join().unwrap();
                }
            });
        }
    });
    assert_eq!(seen.into_inner().unwrap().len(), 10_000);
}

#[test]
fn stale_tag_is_rejected_on_later_threads() {
    let _w = common::watchdog("stale_tag_is_rejected_on_later_threads");
    let first = ste::Thread::new().unwrap();
    let first_tag = first.tag();
    let stale = first.submit(|| ste::Tagged::new(17u32)).unwrap();
    first.join().unwrap();

    for _ in 0..common::iters(20, 2) {
        let later = ste::Thread::new().unwrap();
        assert_ne!(later.tag(), first_tag);
        later
            .submit(|| {
                assert!(!stale.is_current());
                assert!(stale.try_get().is_none());
                let msg = catch_unwind(AssertUnwindSafe(|| *stale)).unwrap_err();
                let msg = msg.downcast_ref::<String>().unwrap();
                assert!(msg.contains(&format!("{first_tag:?}")), "{msg}");
                assert!(
                    msg.contains(&format!("{:?}", ste::Tag::current().unwrap())),
                    "{msg}"
                );
            })
            .unwrap();
        later.join().unwrap();
    }
    // Its owner is gone: dropping it here leaks the `u32` (documented).
    drop(stale);
}

#[test]
fn tag_is_current_for_the_whole_life_of_the_worker() {
    let _w = common::watchdog("tag_is_current_for_the_whole_life_of_the_worker");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (pre, post) = (seen.clone(), seen.clone());
    let thread = ste::Builder::new()
        .prelude(move || pre.lock().unwrap().push(ste::Tag::current()))
        .postlude(move || post.lock().unwrap().push(ste::Tag::current()))
        .build()
        .unwrap();
    let tag = thread.tag();
    assert_eq!(thread.submit(ste::Tag::current).unwrap(), Some(tag));
    thread.submit(|| tag.ensure_current()).unwrap();
    assert!(!tag.is_current());
    let err = catch_unwind(|| tag.ensure_current()).unwrap_err();
    assert!(
        err.downcast_ref::<String>()
            .unwrap()
            .contains("not an ste worker")
    );
    thread.join().unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(tag), Some(tag)]);
}

#[test]
fn tagged_new_off_worker_panics_clearly() {
    let _w = common::watchdog("tagged_new_off_worker_panics_clearly");
    let err = catch_unwind(|| ste::Tagged::new(1u8)).unwrap_err();
    assert!(
        err.downcast_ref::<&str>()
            .unwrap()
            .contains("outside of an ste worker")
    );
}

#[test]
fn tagged_accessors_on_and_off_thread() {
    let _w = common::watchdog("tagged_accessors_on_and_off_thread");
    let thread = ste::Thread::new().unwrap();
    let mut v = thread.submit(|| ste::Tagged::new(vec![1, 2])).unwrap();
    assert_eq!(v.tag(), thread.tag());
    assert!(v.try_get_mut().is_none());
    assert_eq!(
        format!("{v:?}"),
        format!("Tagged {{ tag: {:?}, .. }}", thread.tag())
    );
    let v = thread
        .submit(move || {
            v.push(3);
            assert_eq!(
                format!("{v:?}"),
                format!("Tagged {{ tag: {:?}, value: [1, 2, 3] }}", v.tag())
            );
            v
        })
        .unwrap();
    let v = v.try_into_inner().unwrap_err();
    let inner = thread.submit(move || v.into_inner()).unwrap();
    assert_eq!(inner, [1, 2, 3]);
    thread.join().unwrap();
}
