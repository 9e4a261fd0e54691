//! A reusable, allocation-free oneshot channel (work in progress).
