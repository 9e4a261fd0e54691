//! A "device" that must only ever be touched from one thread (think of an
//! audio driver or a COM object: here an `Rc<RefCell<..>>`, which is `!Send`),
//! owned by an `ste` worker and driven from several threads at once.
//!
//! The handle to the device is a `ste::Tagged`, so it can be shared freely
//! (`Tagged` is `Send + Sync`), yet it can only be dereferenced inside
//! `submit`, on the device thread. Closures borrow the callers' stacks: no
//! `'static`, no channels, no allocation per call.
//!
//! Run with `cargo run -p examples --bin ste_device`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// A pretend device: not thread-safe at all.
struct Device {
    volume: u8,
    frames_written: u64,
    log: Vec<String>,
}

impl Device {
    fn open() -> Self {
        Device {
            volume: 50,
            frames_written: 0,
            log: vec!["opened".into()],
        }
    }

    fn write(&mut self, frames: &[f32]) {
        self.frames_written += frames.len() as u64;
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        println!(
            "device closed on {:?} after {} frames",
            std::thread::current().name().unwrap_or("?"),
            self.frames_written
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let thread = Arc::new(
        ste::Builder::new()
            .name("device")
            .prelude(|| println!("device thread up (e.g. COM init, raise priority)"))
            .postlude(|| println!("device thread down"))
            .build()?,
    );

    // Open the device on its thread; hand out a tagged handle.
    let device =
        Arc::new(thread.submit(|| ste::Tagged::new(Rc::new(RefCell::new(Device::open()))))?);
    assert!(
        device.try_get().is_none(),
        "not usable off the device thread"
    );

    // Several producers write audio buffers that live on their own stacks.
    let producers: Vec<_> = (0..4)
        .map(|id| {
            let (thread, device) = (Arc::clone(&thread), Arc::clone(&device));
            std::thread::spawn(move || -> Result<(), ste::Error> {
                let buffer = vec![0.25f32; 256]; // borrowed by the closure below
                for _ in 0..1_000 {
                    thread.submit(|| device.borrow_mut().write(&buffer))?;
                }
                let note = format!("producer {id} done");
                thread.submit(|| device.borrow_mut().log.push(note))?;
                Ok(())
            })
        })
        .collect();

    // Meanwhile, a "UI" thread turns the volume up.
    let ui = {
        let (thread, device) = (Arc::clone(&thread), Arc::clone(&device));
        std::thread::spawn(move || -> Result<u8, ste::Error> {
            let mut last = 0;
            for _ in 0..10 {
                last = thread.submit(|| {
                    let mut d = device.borrow_mut();
                    d.volume = d.volume.saturating_add(5);
                    d.volume
                })?;
            }
            Ok(last)
        })
    };

    for p in producers {
        p.join().expect("producer panicked")?;
    }
    let volume = ui.join().expect("ui panicked")?;

    let (frames, log_len) = thread.submit(|| {
        let d = device.borrow();
        (d.frames_written, d.log.len())
    })?;
    println!("volume {volume}, {frames} frames, {log_len} log entries");
    assert_eq!(frames, 4 * 1_000 * 256);
    assert_eq!(volume, 100);
    assert_eq!(log_len, 1 + 4);

    // Close the device on its own thread, then stop the thread.
    let device = Arc::try_unwrap(device).map_err(|_| "device still shared")?;
    // Through an `Arc`, name the method fully: `Arc` itself implements `Drop`.
    ste::Thread::drop(&thread, device)?;
    Arc::try_unwrap(thread)
        .map_err(|_| "thread still shared")?
        .join()?;
    Ok(())
}
