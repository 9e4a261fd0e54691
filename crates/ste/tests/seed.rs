//! The seed's examples, verbatim, each inside a function returning
//! `Result<(), Box<dyn std::error::Error>>`.

mod common;

struct Foo;

impl Foo {
    fn say_hello(&self) {
        println!("Hello World!");
    }
}

#[test]
fn borrowing_submit() -> Result<(), Box<dyn std::error::Error>> {
    let _w = common::watchdog("borrowing_submit");
    let thread = ste::Thread::new()?;
    let mut n = 10;
    thread.submit(|| n += 10)?;
    assert_eq!(20, n);
    thread.join()?;
    Ok(())
}

#[test]
#[should_panic(expected = "wrong thread")]
fn tagged_off_thread_panics() {
    fn inner() -> Result<(), Box<dyn std::error::Error>> {
        let thread = ste::Thread::new()?;
        let foo = thread.submit(|| ste::Tagged::new(Foo))?;
        foo.say_hello(); // <- Panics!
        thread.join()?;
        Ok(())
    }
    let _w = common::watchdog("tagged_off_thread_panics");
    let _ = inner();
}

#[test]
fn tagged_on_its_thread_is_fine() -> Result<(), Box<dyn std::error::Error>> {
    let _w = common::watchdog("tagged_on_its_thread_is_fine");
    let thread = ste::Thread::new()?;
    let foo = thread.submit(|| ste::Tagged::new(Foo))?;
    thread.submit(|| {
        foo.say_hello(); // <- OK!
    })?;
    thread.join()?;
    Ok(())
}
