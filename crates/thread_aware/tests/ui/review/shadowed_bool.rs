#![deny(warnings)]
#![allow(non_camel_case_types)]
use thread_aware::ThreadAware;

#[allow(dead_code)]
struct bool;

#[derive(ThreadAware)]
struct Plain {
    x: u32,
}

fn main() {
    let cores = thread_aware::create_manual_affinities(&[2]);
    let p = Plain { x: 1 }.relocated(cores[0], cores[1]);
    assert_eq!(p.x, 1);
}
