//! `crate = path`: the derive reaches the crate through a re-export, with
//! no `thread_aware` name in scope.
#![deny(warnings)]

pub extern crate thread_aware as renamed_thread_aware;

mod reexport {
    pub use renamed_thread_aware as ta;
}

mod user {
    use crate::reexport::ta;

    #[derive(ta::ThreadAware)]
    #[thread_aware(crate = crate::reexport::ta)]
    pub struct Point {
        pub x: i32,
        pub y: Vec<i32>,
    }
}

fn main() {
    use reexport::ta::ThreadAware;
    let a = reexport::ta::create_manual_affinities(&[2]);
    let p = user::Point { x: 1, y: vec![2] }.relocated(a[0], a[1]);
    assert_eq!((p.x, p.y), (1, vec![2]));
}
