//! `submit` rejects closures that are not `Send` (capturing an `Rc`) and
//! results that are not `Send`.

#[test]
#[cfg_attr(miri, ignore)] // trybuild runs rustc, which Miri cannot
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
