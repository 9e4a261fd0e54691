// `Receiver<T>` is invariant in `T` as well: a receiver of `&'static str`
// must not become a receiver of `&'a str` (its next sender would then accept
// a short-lived `&'a str` that the original owner reads as `&'static str`).
fn shorten<'a>(r: multishot::Receiver<&'static str>) -> multishot::Receiver<&'a str> {
    r
}

fn main() {
    let r = multishot::Receiver::<&'static str>::new();
    let _ = shorten(r);
}
