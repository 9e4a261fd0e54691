//! `ThreadAware` for the standard library's types.
//!
//! Values with no per-affinity state are *inert* (`INERT = true`): they
//! relocate to themselves. Containers forward relocation to every element,
//! unless the elements are inert: then the container returns itself, in
//! O(1), without touching (or copying) an element.

use crate::{MemoryAffinity, ThreadAware};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

macro_rules! inert {
    ($($t:ty),* $(,)?) => {$(
        impl ThreadAware for $t {
            const INERT: bool = true;
            #[inline]
            fn relocated(self, _source: MemoryAffinity, _destination: MemoryAffinity) -> Self {
                self
            }
        }
    )*};
}

inert!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    core::num::NonZeroU8,
    core::num::NonZeroU16,
    core::num::NonZeroU32,
    core::num::NonZeroU64,
    core::num::NonZeroU128,
    core::num::NonZeroUsize,
    core::num::NonZeroI8,
    core::num::NonZeroI16,
    core::num::NonZeroI32,
    core::num::NonZeroI64,
    core::num::NonZeroI128,
    core::num::NonZeroIsize,
    String,
    &'static str,
    std::path::PathBuf,
    std::time::Duration,
    std::time::Instant,
    std::time::SystemTime,
    std::net::IpAddr,
    std::net::Ipv4Addr,
    std::net::Ipv6Addr,
    std::net::SocketAddr,
    std::net::SocketAddrV4,
    std::net::SocketAddrV6,
);

impl<T: ?Sized> ThreadAware for PhantomData<T> {
    const INERT: bool = true;
    fn relocated(self, _source: MemoryAffinity, _destination: MemoryAffinity) -> Self {
        self
    }
}

impl<T: ThreadAware> ThreadAware for Option<T> {
    const INERT: bool = T::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        self.map(|v| v.relocated(source, destination))
    }
}

impl<T: ThreadAware, E: ThreadAware> ThreadAware for Result<T, E> {
    const INERT: bool = T::INERT && E::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        match self {
            Ok(v) => Ok(v.relocated(source, destination)),
            Err(e) => Err(e.relocated(source, destination)),
        }
    }
}

impl<T: ThreadAware> ThreadAware for Box<T> {
    const INERT: bool = T::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        if T::INERT {
            return self;
        }
        // Relocated in place: the allocation is reused.
        let mut this = self;
        // Moves the value out of the box and the relocated one back in.
        *this = (*this).relocated(source, destination);
        this
    }
}

impl<T: ThreadAware, const N: usize> ThreadAware for [T; N] {
    const INERT: bool = T::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        if T::INERT {
            return self;
        }
        self.map(|v| v.relocated(source, destination))
    }
}

impl<T: ThreadAware> ThreadAware for Vec<T> {
    const INERT: bool = T::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        if T::INERT {
            return self;
        }
        // `into_iter().map().collect()` into the same type reuses the buffer.
        self.into_iter()
            .map(|v| v.relocated(source, destination))
            .collect()
    }
}

impl<T: ThreadAware> ThreadAware for VecDeque<T> {
    const INERT: bool = T::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        if T::INERT {
            return self;
        }
        Vec::from(self).relocated(source, destination).into()
    }
}

impl<K, V, S> ThreadAware for HashMap<K, V, S>
where
    K: ThreadAware + Hash + Eq,
    V: ThreadAware,
    S: BuildHasher + Clone,
{
    const INERT: bool = K::INERT && V::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        if Self::INERT {
            return self;
        }
        let mut out = HashMap::with_capacity_and_hasher(self.len(), self.hasher().clone());
        for (k, v) in self {
            out.insert(
                k.relocated(source, destination),
                v.relocated(source, destination),
            );
        }
        out
    }
}

impl<T, S> ThreadAware for HashSet<T, S>
where
    T: ThreadAware + Hash + Eq,
    S: BuildHasher + Clone,
{
    const INERT: bool = T::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        if T::INERT {
            return self;
        }
        let mut out = HashSet::with_capacity_and_hasher(self.len(), self.hasher().clone());
        for v in self {
            out.insert(v.relocated(source, destination));
        }
        out
    }
}

impl<K: ThreadAware + Ord, V: ThreadAware> ThreadAware for BTreeMap<K, V> {
    const INERT: bool = K::INERT && V::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        if Self::INERT {
            return self;
        }
        self.into_iter()
            .map(|(k, v)| {
                (
                    k.relocated(source, destination),
                    v.relocated(source, destination),
                )
            })
            .collect()
    }
}

impl<T: ThreadAware + Ord> ThreadAware for BTreeSet<T> {
    const INERT: bool = T::INERT;
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        if T::INERT {
            return self;
        }
        self.into_iter()
            .map(|v| v.relocated(source, destination))
            .collect()
    }
}

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: ThreadAware),+> ThreadAware for ($($name,)+) {
            const INERT: bool = true $(&& $name::INERT)+;
            #[allow(non_snake_case)]
            fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
                let ($($name,)+) = self;
                ($($name.relocated(source, destination),)+)
            }
        }
    };
}

tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);
tuple!(A B C D E F G H I);
tuple!(A B C D E F G H I J);
tuple!(A B C D E F G H I J K);
tuple!(A B C D E F G H I J K L);
