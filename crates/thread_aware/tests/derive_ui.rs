//! `#[derive(ThreadAware)]` at compile time: `tests/ui/pass` must build
//! warning-free (each file denies warnings), and every `tests/ui/fail` case
//! must fail with exactly its checked-in `.stderr` (each error pointing at
//! the offending token). Record new ones with
//! `TRYBUILD=overwrite cargo test -p thread_aware --test derive_ui`.
#![cfg(feature = "derive")]

#[test]
#[cfg_attr(miri, ignore)] // trybuild runs rustc: not under Miri
fn derive_ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
