//! Compile-fail tests: invariance in `T` and `Send` only for `Send` values.

#[test]
#[cfg_attr(miri, ignore)] // trybuild runs rustc, which Miri cannot
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
