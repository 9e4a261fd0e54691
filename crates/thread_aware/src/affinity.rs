//! Where a value lives: a processor and the memory region (NUMA node) it
//! belongs to.

use core::fmt;

/// A place a value can live: one processor, in one memory region.
///
/// Processors are numbered densely, `0..processor_count()`, region by region
/// (the processors of region 0 first); regions are numbered
/// `0..memory_region_count()`. Both indexes are validated against their
/// counts when the affinity is made, so every `MemoryAffinity` is in range.
///
/// Cheap to copy (four `usize`s); ordered by processor index.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemoryAffinity {
    // Field order gives the derived `Ord`: by processor first.
    processor_index: usize,
    processor_count: usize,
    memory_region_index: usize,
    memory_region_count: usize,
}

impl MemoryAffinity {
    /// An affinity from its four numbers.
    ///
    /// # Panics
    ///
    /// If an index is not below its count.
    pub fn new(
        processor_index: usize,
        processor_count: usize,
        memory_region_index: usize,
        memory_region_count: usize,
    ) -> Self {
        assert!(
            processor_index < processor_count,
            "thread_aware: processor index {processor_index} is not below the processor count {processor_count}"
        );
        assert!(
            memory_region_index < memory_region_count,
            "thread_aware: memory region index {memory_region_index} is not below the region count {memory_region_count}"
        );
        Self {
            processor_index,
            processor_count,
            memory_region_index,
            memory_region_count,
        }
    }

    /// This processor's dense index, below [`processor_count`](Self::processor_count).
    pub fn processor_index(&self) -> usize {
        self.processor_index
    }

    /// How many processors the set this affinity belongs to has.
    pub fn processor_count(&self) -> usize {
        self.processor_count
    }

    /// The memory region's (NUMA node's) dense index.
    pub fn memory_region_index(&self) -> usize {
        self.memory_region_index
    }

    /// How many memory regions the set has.
    pub fn memory_region_count(&self) -> usize {
        self.memory_region_count
    }
}

impl fmt::Debug for MemoryAffinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryAffinity")
            .field(
                "processor",
                &format_args!("{}/{}", self.processor_index, self.processor_count),
            )
            .field(
                "memory_region",
                &format_args!("{}/{}", self.memory_region_index, self.memory_region_count),
            )
            .finish()
    }
}

impl fmt::Display for MemoryAffinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "processor {} of {} (memory region {} of {})",
            self.processor_index,
            self.processor_count,
            self.memory_region_index,
            self.memory_region_count
        )
    }
}

/// One affinity per processor for a made-up machine: `counts[r]` processors
/// in memory region `r`, numbered region by region. `&[2, 3]` gives
/// processors 0-1 in region 0 and 2-4 in region 1.
///
/// For tests and for runtimes that decide their own layout; the real
/// machine's is [`crate::topology`].
///
/// # Panics
///
/// If `counts` is empty, a region has no processor, or the processors add
/// up to more than 2^22 (no machine has that many; the list would not fit
/// in memory).
pub fn create_manual_affinities(counts: &[usize]) -> Vec<MemoryAffinity> {
    /// The most processors a made-up machine may have.
    const MAX_PROCESSORS: usize = 1 << 22;
    assert!(
        !counts.is_empty(),
        "thread_aware: create_manual_affinities needs at least one memory region"
    );
    assert!(
        counts.iter().all(|&c| c > 0),
        "thread_aware: every memory region needs at least one processor (got {counts:?})"
    );
    let total = counts
        .iter()
        .try_fold(0usize, |sum, &c| sum.checked_add(c))
        .filter(|&total| total <= MAX_PROCESSORS)
        .unwrap_or_else(|| {
            panic!(
                "thread_aware: create_manual_affinities supports at most {MAX_PROCESSORS} \
                 processors in all (got {counts:?})"
            )
        });
    let mut out = Vec::with_capacity(total);
    for (region, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            out.push(MemoryAffinity::new(out.len(), total, region, counts.len()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_affinities_are_numbered_region_by_region() {
        let a = create_manual_affinities(&[2, 3]);
        let got: Vec<(usize, usize)> = a
            .iter()
            .map(|x| (x.processor_index(), x.memory_region_index()))
            .collect();
        assert_eq!(got, [(0, 0), (1, 0), (2, 1), (3, 1), (4, 1)]);
        assert!(
            a.iter()
                .all(|x| x.processor_count() == 5 && x.memory_region_count() == 2)
        );
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a[2].to_string(), "processor 2 of 5 (memory region 1 of 2)");
    }

    #[test]
    #[should_panic(expected = "not below the processor count")]
    fn an_index_out_of_range_panics() {
        let _ = MemoryAffinity::new(3, 3, 0, 1);
    }

    #[test]
    #[should_panic(expected = "at least one processor")]
    fn an_empty_region_panics() {
        let _ = create_manual_affinities(&[2, 0]);
    }
}
