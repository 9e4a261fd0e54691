//! One dedicated background thread (work in progress).
