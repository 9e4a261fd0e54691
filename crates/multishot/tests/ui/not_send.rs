// A channel of `Rc` cannot cross threads.
fn main() {
    let (s, _r) = multishot::channel::<std::rc::Rc<u8>>();
    std::thread::spawn(move || drop(s));
}
