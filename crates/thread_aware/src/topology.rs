//! The real machine: the processors this process may run on, grouped by
//! memory region (NUMA node), and pinning threads to them.
//!
//! [`Topology::current`] asks the kernel which CPUs the calling thread may
//! run on (`sched_getaffinity`, which already reflects `taskset`, cgroup
//! cpusets and container limits), drops the ones that are offline, and groups
//! the rest by NUMA node as sysfs describes them
//! (`/sys/devices/system/node/node*/cpulist`). The result is numbered like
//! [`create_manual_affinities`](crate::create_manual_affinities): one
//! [`MemoryAffinity`] per allowed CPU, processor indexes `0..n` over the CPUs
//! sorted by node, then by CPU id; region indexes `0..m` over the nodes that
//! kept at least one CPU, in node order.
//!
//! [`Topology::pin_current_thread`] binds the calling thread to one
//! affinity's CPU and remembers the affinity in a thread-local, which
//! [`current_affinity`] reads back without any lock.
//!
//! ```no_run
//! use thread_aware::{Topology, current_affinity};
//!
//! let topology = Topology::current()?;
//! let workers: Vec<_> = topology
//!     .affinities()
//!     .iter()
//!     .map(|&affinity| {
//!         let topology = topology.clone();
//!         std::thread::spawn(move || {
//!             topology.pin_current_thread(affinity).expect("pin");
//!             assert_eq!(current_affinity(), Some(affinity));
//!             // ... run this processor's work ...
//!         })
//!     })
//!     .collect();
//! for worker in workers {
//!     worker.join().unwrap();
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use crate::MemoryAffinity;
use std::cell::Cell;
use std::io;
use std::path::Path;

/// The processors a process may run on, grouped by memory region (NUMA
/// node), each with its [`MemoryAffinity`] and OS CPU id.
///
/// Made by [`Topology::current`] for the running machine, or by
/// [`Topology::from_sysfs`] from any sysfs-shaped folder (tests, or a
/// machine description captured elsewhere).
///
/// Every affinity of one topology has the same
/// [`processor_count`](MemoryAffinity::processor_count) and
/// [`memory_region_count`](MemoryAffinity::memory_region_count); the
/// affinities are sorted by processor index, which equals their position in
/// [`affinities`](Self::affinities).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// One per processor, in processor-index order.
    affinities: Vec<MemoryAffinity>,
    /// The OS CPU id of each processor, same order.
    cpu_ids: Vec<usize>,
    /// The OS NUMA node id of each region, in region-index order; `None` for
    /// the trailing region of CPUs that no node lists.
    node_ids: Vec<Option<usize>>,
}

impl Topology {
    /// The processors the calling thread may run on, read from the kernel
    /// (`sched_getaffinity` of the calling thread, which reflects affinity
    /// masks and cgroup cpusets) and grouped by NUMA node from `/sys`.
    ///
    /// The mask is the *calling thread's*: call this before pinning, or from
    /// a thread that was not pinned (a thread pinned to one CPU sees a
    /// one-processor machine). Keep the result rather than calling this
    /// often: each call reads several sysfs files.
    ///
    /// # Errors
    ///
    /// If `sched_getaffinity` fails, a sysfs file cannot be read or parsed,
    /// or no allowed CPU is online.
    #[cfg(target_os = "linux")]
    pub fn current() -> io::Result<Topology> {
        let allowed = sched_getaffinity_self()?;
        Self::from_sysfs(Path::new("/sys"), &allowed)
    }

    /// The topology that the sysfs tree under `root` describes (`root` plays
    /// the part of `/sys`), restricted to the CPU ids in `allowed`.
    ///
    /// Reads `root/devices/system/node/node<N>/cpulist` for every node and
    /// `root/devices/system/cpu/online`:
    ///
    /// - a CPU is used when it is in `allowed` and online; without an
    ///   `online` file every CPU counts as online;
    /// - without a `node` directory (or with no `node<N>` in it), every used
    ///   CPU is in one memory region;
    /// - nodes are taken in numeric order (`node2` before `node10`), CPUs in
    ///   id order within a node; a node left with no used CPU is dropped, so
    ///   region indexes stay dense;
    /// - a used CPU that no node lists goes into one extra region after the
    ///   others (its [`numa_node`](Self::numa_node) is `None`), so no allowed
    ///   processor is lost; a CPU listed by two nodes counts for the first.
    ///
    /// `allowed` may be in any order and hold duplicates.
    ///
    /// # Errors
    ///
    /// If a file that exists cannot be read or is not valid cpulist syntax
    /// (see [`parse_cpu_list`]), or if no CPU is left.
    pub fn from_sysfs(root: &Path, allowed: &[usize]) -> io::Result<Topology> {
        let online = match std::fs::read_to_string(root.join("devices/system/cpu/online")) {
            Ok(text) => Some(parse_cpu_list(&text).map_err(|e| context(e, "cpu/online"))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(context(e, "cpu/online")),
        };

        let mut nodes: Vec<(usize, Vec<usize>)> = Vec::new();
        match std::fs::read_dir(root.join("devices/system/node")) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name();
                    let Some(id) = name
                        .to_str()
                        .and_then(|n| n.strip_prefix("node"))
                        .and_then(|n| n.parse::<usize>().ok())
                    else {
                        continue; // `has_cpu`, `online`, `possible`, ...
                    };
                    let path = entry.path().join("cpulist");
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| context(e, &path.display().to_string()))?;
                    let cpus = parse_cpu_list(&text)
                        .map_err(|e| context(e, &path.display().to_string()))?;
                    nodes.push((id, cpus));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(context(e, "node")),
        }

        Self::build(nodes, online.as_deref(), allowed)
    }

    /// Groups and numbers; `nodes` in any order, `online == None` means all.
    fn build(
        mut nodes: Vec<(usize, Vec<usize>)>,
        online: Option<&[usize]>,
        allowed: &[usize],
    ) -> io::Result<Topology> {
        let mut used: Vec<usize> = allowed
            .iter()
            .copied()
            .filter(|cpu| online.is_none_or(|online| online.contains(cpu)))
            .collect();
        used.sort_unstable();
        used.dedup();

        nodes.sort_by_key(|&(id, _)| id);
        let mut regions: Vec<(Option<usize>, Vec<usize>)> = Vec::new();
        let mut taken = vec![false; used.len()];
        for (id, cpus) in nodes {
            let mut mine: Vec<usize> = Vec::new();
            for cpu in cpus {
                if let Ok(at) = used.binary_search(&cpu) {
                    if !taken[at] {
                        taken[at] = true;
                        mine.push(cpu);
                    }
                }
            }
            if !mine.is_empty() {
                mine.sort_unstable();
                regions.push((Some(id), mine));
            }
        }
        let rest: Vec<usize> = used
            .iter()
            .zip(&taken)
            .filter(|&(_, &taken)| !taken)
            .map(|(&cpu, _)| cpu)
            .collect();
        if !rest.is_empty() {
            regions.push((None, rest));
        }

        if used.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "thread_aware: no usable processor: the allowed CPUs {allowed:?} are all offline"
                ),
            ));
        }

        let counts: Vec<usize> = regions.iter().map(|(_, cpus)| cpus.len()).collect();
        let affinities = crate::create_manual_affinities(&counts);
        let cpu_ids = regions
            .iter()
            .flat_map(|(_, cpus)| cpus.iter().copied())
            .collect();
        let node_ids = regions.iter().map(|&(id, _)| id).collect();
        Ok(Topology {
            affinities,
            cpu_ids,
            node_ids,
        })
    }

    /// One affinity per processor, sorted by processor index (the affinity at
    /// position `i` has processor index `i`), region by region.
    pub fn affinities(&self) -> &[MemoryAffinity] {
        &self.affinities
    }

    /// How many processors (allowed, online CPUs) there are.
    pub fn processor_count(&self) -> usize {
        self.affinities.len()
    }

    /// How many memory regions (NUMA nodes with at least one processor)
    /// there are.
    pub fn memory_region_count(&self) -> usize {
        self.node_ids.len()
    }

    /// The OS CPU id (as `sched_setaffinity` and `sched_getcpu` number them)
    /// of `affinity`'s processor.
    ///
    /// # Panics
    ///
    /// If `affinity` is not one of this topology's [`affinities`](Self::affinities).
    pub fn cpu_id(&self, affinity: MemoryAffinity) -> usize {
        self.cpu_ids[self.index_of(affinity)]
    }

    /// The OS NUMA node id of `affinity`'s memory region, or `None` for the
    /// region of CPUs that no sysfs node lists.
    ///
    /// # Panics
    ///
    /// If `affinity` is not one of this topology's [`affinities`](Self::affinities).
    pub fn numa_node(&self, affinity: MemoryAffinity) -> Option<usize> {
        let index = self.index_of(affinity);
        self.node_ids[self.affinities[index].memory_region_index()]
    }

    /// The affinity whose processor is OS CPU `cpu_id`, if that CPU is one of
    /// this topology's (for example to map `sched_getcpu()` back).
    pub fn affinity_of_cpu(&self, cpu_id: usize) -> Option<MemoryAffinity> {
        self.cpu_ids
            .iter()
            .position(|&cpu| cpu == cpu_id)
            .map(|index| self.affinities[index])
    }

    /// Binds the calling thread to `affinity`'s CPU (`sched_setaffinity` of
    /// the calling thread to that one CPU) and records `affinity` as the
    /// thread's [`current_affinity`].
    ///
    /// # Errors
    ///
    /// The OS error of `sched_setaffinity` (for example `EINVAL` when the
    /// CPU went offline or left the cgroup's cpuset since the topology was
    /// read). The thread's mask and its recorded affinity are then unchanged.
    ///
    /// # Panics
    ///
    /// If `affinity` is not one of this topology's [`affinities`](Self::affinities).
    #[cfg(target_os = "linux")]
    pub fn pin_current_thread(&self, affinity: MemoryAffinity) -> io::Result<()> {
        let cpu = self.cpu_id(affinity);
        sched_setaffinity_self(cpu)?;
        set_current_affinity(Some(affinity));
        Ok(())
    }

    fn index_of(&self, affinity: MemoryAffinity) -> usize {
        let index = affinity.processor_index();
        assert!(
            self.affinities.get(index) == Some(&affinity),
            "thread_aware: {affinity:?} does not belong to this topology ({} processors in {} memory regions)",
            self.processor_count(),
            self.memory_region_count()
        );
        index
    }
}

fn context(error: io::Error, what: &str) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("thread_aware: reading sysfs {what}: {error}"),
    )
}

/// Parses the kernel's cpulist syntax (`"0-3,8,10-11"`, as in sysfs
/// `cpulist` and `online` files and cgroup `cpuset.cpus`) into sorted,
/// deduplicated CPU ids. Whitespace (including the trailing newline) around
/// items is ignored; an empty list gives no CPU.
///
/// ```
/// use thread_aware::topology::parse_cpu_list;
///
/// assert_eq!(parse_cpu_list("0-3,8,10-11\n").unwrap(), [0, 1, 2, 3, 8, 10, 11]);
/// assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<usize>::new());
/// assert!(parse_cpu_list("3-1").is_err());
/// ```
///
/// # Errors
///
/// `InvalidData` for anything else: a non-number, an empty item, a range
/// whose end is below its start, or one too large to hold in memory.
pub fn parse_cpu_list(text: &str) -> io::Result<Vec<usize>> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("thread_aware: invalid cpulist {text:?}: {why}"),
        )
    };
    let number = |s: &str| -> io::Result<usize> {
        let s = s.trim();
        let n: usize = s
            .parse()
            .map_err(|_| bad(&format!("{s:?} is not a CPU id")))?;
        if n > MAX_CPU {
            return Err(bad(&format!("CPU id {n} is too large")));
        }
        Ok(n)
    };
    // Ranges first, merged, then expanded: repeated or overlapping ranges
    // cost nothing extra (expanding each item before deduplicating let a
    // short string of repeated large ranges allocate gigabytes).
    let mut ranges = Vec::new();
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    for item in text.trim().split(',') {
        if item.trim().is_empty() {
            return Err(bad("empty item"));
        }
        match item.split_once('-') {
            Some((start, end)) => {
                let (start, end) = (number(start)?, number(end)?);
                if end < start {
                    return Err(bad(&format!("range {start}-{end} ends before it starts")));
                }
                ranges.push((start, end));
            }
            None => {
                let cpu = number(item)?;
                ranges.push((cpu, cpu));
            }
        }
    }
    ranges.sort_unstable();
    let mut cpus: Vec<usize> = Vec::new();
    for (start, end) in ranges {
        // Sorted by start: only the tail of `cpus` can overlap this range.
        let from = cpus.last().map_or(start, |&last| start.max(last + 1));
        if from <= end {
            cpus.extend(from..=end);
        }
    }
    Ok(cpus)
}

sync_core::thread_local! {
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro takes no `const {}`
    static CURRENT: Cell<Option<MemoryAffinity>> = Cell::new(None);
}

/// The affinity the calling thread was last pinned to with
/// [`Topology::pin_current_thread`] (or recorded with
/// [`set_current_affinity`]), or `None`. A thread-local read: no lock, no
/// system call.
pub fn current_affinity() -> Option<MemoryAffinity> {
    CURRENT.with(Cell::get)
}

/// Records `affinity` as the calling thread's [`current_affinity`] without
/// pinning it, and returns the previous one. For runtimes that place threads
/// themselves (or use [`create_manual_affinities`](crate::create_manual_affinities)),
/// and to clear the record with `None`.
pub fn set_current_affinity(affinity: Option<MemoryAffinity>) -> Option<MemoryAffinity> {
    CURRENT.with(|current| current.replace(affinity))
}

/// A CPU mask as the kernel reads and writes it: an array of `c_ulong`
/// words, bit `cpu % BITS` of word `cpu / BITS` for each CPU.
#[cfg(target_os = "linux")]
type MaskWord = libc::c_ulong;

/// The calling thread's allowed CPUs.
#[cfg(target_os = "linux")]
fn sched_getaffinity_self() -> io::Result<Vec<usize>> {
    const BITS: usize = MaskWord::BITS as usize;
    // Start at glibc's `cpu_set_t` (1024 CPUs) and grow while the kernel
    // says the mask is too small for its CPU count.
    let mut words = core::mem::size_of::<libc::cpu_set_t>() / core::mem::size_of::<MaskWord>();
    loop {
        let mut mask: Vec<MaskWord> = vec![0; words];
        let bytes = words * core::mem::size_of::<MaskWord>();
        // SAFETY: `mask` is a live, writable buffer of exactly `bytes` bytes,
        // aligned for `c_ulong` (the kernel's mask word, and the alignment of
        // `cpu_set_t`); the kernel writes at most `bytes` bytes into it.
        let rc = unsafe { libc::sched_getaffinity(0, bytes, mask.as_mut_ptr().cast()) };
        if rc == 0 {
            let mut cpus = Vec::new();
            for (i, &word) in mask.iter().enumerate() {
                for bit in 0..BITS {
                    if word & (1 << bit) != 0 {
                        cpus.push(i * BITS + bit);
                    }
                }
            }
            return Ok(cpus);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EINVAL) && words < (1 << 16) {
            words *= 2;
            continue;
        }
        return Err(error);
    }
}

/// The largest CPU id this crate handles: no machine has this many CPUs,
/// and a CPU mask (or a list) reaching further would exhaust memory.
const MAX_CPU: usize = 1 << 22;

/// Binds the calling thread to `cpu` alone. A CPU id above [`MAX_CPU`] is
/// `EINVAL`, as the kernel answers for any CPU it does not have (a mask
/// that large would take more memory than the machine has).
#[cfg(target_os = "linux")]
fn sched_setaffinity_self(cpu: usize) -> io::Result<()> {
    const BITS: usize = MaskWord::BITS as usize;
    if cpu > MAX_CPU {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let min_words = core::mem::size_of::<libc::cpu_set_t>() / core::mem::size_of::<MaskWord>();
    let mut mask: Vec<MaskWord> = vec![0; (cpu / BITS + 1).max(min_words)];
    mask[cpu / BITS] |= 1 << (cpu % BITS);
    let bytes = mask.len() * core::mem::size_of::<MaskWord>();
    // SAFETY: `mask` is a live buffer of exactly `bytes` bytes, aligned for
    // `c_ulong` like `cpu_set_t`; the kernel only reads `bytes` bytes of it.
    let rc = unsafe { libc::sched_setaffinity(0, bytes, mask.as_ptr().cast()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
