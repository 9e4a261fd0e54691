// `Sender<T>` is invariant in `T`: a sender of `&'static str` must not
// become a sender of a shorter-lived `&'a str` (the receiver would then hand
// out a `&'static str` that only lives for `'a`).
fn shorten<'a>(s: multishot::Sender<&'static str>) -> multishot::Sender<&'a str> {
    s
}

fn main() {
    let (s, _r) = multishot::channel::<&'static str>();
    let _ = shorten(s);
}
