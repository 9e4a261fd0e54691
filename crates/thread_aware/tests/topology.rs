//! The machine topology: cpulist parsing (runs under Miri), sysfs fixtures
//! for machines this one is not (2 and 4 NUMA nodes, offline CPUs, no node
//! directory, sparse node ids), masks that exclude CPUs, and pinning on the
//! real machine.

use std::path::{Path, PathBuf};
use thread_aware::topology::parse_cpu_list;
use thread_aware::{MemoryAffinity, Topology, create_manual_affinities, current_affinity};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// (processor index, region index, cpu id, numa node) of every processor.
fn layout(t: &Topology) -> Vec<(usize, usize, usize, Option<usize>)> {
    t.affinities()
        .iter()
        .map(|&a| {
            (
                a.processor_index(),
                a.memory_region_index(),
                t.cpu_id(a),
                t.numa_node(a),
            )
        })
        .collect()
}

/// The invariants every topology keeps: dense, region by region, counts
/// agree, and the numbering is `create_manual_affinities`'s.
fn check_invariants(t: &Topology) {
    let a = t.affinities();
    assert!(!a.is_empty());
    assert_eq!(a.len(), t.processor_count());
    let mut counts = vec![0; t.memory_region_count()];
    for (i, x) in a.iter().enumerate() {
        assert_eq!(x.processor_index(), i);
        assert_eq!(x.processor_count(), a.len());
        assert_eq!(x.memory_region_count(), t.memory_region_count());
        counts[x.memory_region_index()] += 1;
        assert_eq!(t.affinity_of_cpu(t.cpu_id(*x)), Some(*x));
    }
    assert_eq!(create_manual_affinities(&counts), a);
    let mut ids: Vec<usize> = a.iter().map(|&x| t.cpu_id(x)).collect();
    ids.dedup();
    assert_eq!(ids.len(), a.len(), "a CPU appears twice");
}

#[test]
fn cpulist_syntax() {
    assert_eq!(parse_cpu_list("0").unwrap(), [0]);
    assert_eq!(
        parse_cpu_list("0-3,8,10-11").unwrap(),
        [0, 1, 2, 3, 8, 10, 11]
    );
    assert_eq!(
        parse_cpu_list(" 0-1 , 4\n").unwrap(),
        [0, 1, 4],
        "whitespace and the trailing newline are ignored"
    );
    assert_eq!(
        parse_cpu_list("5,1-2,2").unwrap(),
        [1, 2, 5],
        "sorted, deduplicated"
    );
    assert_eq!(parse_cpu_list("7-7").unwrap(), [7]);
    assert!(parse_cpu_list("").unwrap().is_empty());
    assert!(parse_cpu_list("\n").unwrap().is_empty(), "a CPU-less node");
}

#[test]
fn cpulist_errors() {
    for bad in [
        "a",
        "1,,2",
        "1,",
        "-1",
        "1-",
        "3-1",
        "1-2-3",
        "0x1",
        "99999999999",
    ] {
        let e = parse_cpu_list(bad).expect_err(bad);
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{bad}");
        assert!(e.to_string().contains("invalid cpulist"), "{e}");
    }
}

#[test]
#[cfg_attr(miri, ignore)] // reads the file system
fn two_nodes() {
    let t = Topology::from_sysfs(&fixture("two_nodes"), &(0..8).collect::<Vec<_>>()).unwrap();
    check_invariants(&t);
    assert_eq!(t.memory_region_count(), 2);
    assert_eq!(
        layout(&t),
        [
            (0, 0, 0, Some(0)),
            (1, 0, 1, Some(0)),
            (2, 0, 2, Some(0)),
            (3, 0, 3, Some(0)),
            (4, 1, 4, Some(1)),
            (5, 1, 5, Some(1)),
            (6, 1, 6, Some(1)),
            (7, 1, 7, Some(1)),
        ]
    );
}

#[test]
#[cfg_attr(miri, ignore)] // reads the file system
fn four_nodes_with_interleaved_cpu_ids() {
    let t = Topology::from_sysfs(&fixture("four_nodes"), &(0..16).collect::<Vec<_>>()).unwrap();
    check_invariants(&t);
    assert_eq!(t.memory_region_count(), 4);
    let cpus: Vec<usize> = t.affinities().iter().map(|&a| t.cpu_id(a)).collect();
    assert_eq!(cpus, [0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15]);
    for &a in t.affinities() {
        assert_eq!(a.memory_region_index(), a.processor_index() / 4);
        assert_eq!(t.numa_node(a), Some(a.memory_region_index()));
    }
}

#[test]
#[cfg_attr(miri, ignore)] // reads the file system
fn offline_cpus_are_left_out_and_an_emptied_node_is_dropped() {
    // Nodes 0: 0-3, 1: 4-7, 2: 8-11; online 0-1,3,8-11 (node 1 entirely offline).
    let t = Topology::from_sysfs(&fixture("offline_cpus"), &(0..12).collect::<Vec<_>>()).unwrap();
    check_invariants(&t);
    assert_eq!(t.memory_region_count(), 2);
    assert_eq!(
        layout(&t),
        [
            (0, 0, 0, Some(0)),
            (1, 0, 1, Some(0)),
            (2, 0, 3, Some(0)),
            (3, 1, 8, Some(2)),
            (4, 1, 9, Some(2)),
            (5, 1, 10, Some(2)),
            (6, 1, 11, Some(2)),
        ]
    );
    assert_eq!(t.affinity_of_cpu(2), None, "offline");
    assert_eq!(t.affinity_of_cpu(5), None, "offline");
}

#[test]
#[cfg_attr(miri, ignore)] // reads the file system
fn no_node_directory_is_one_region() {
    let t = Topology::from_sysfs(&fixture("no_node_dir"), &[5, 0, 3, 3, 1]).unwrap();
    check_invariants(&t);
    assert_eq!(t.memory_region_count(), 1);
    assert_eq!(
        layout(&t),
        [
            (0, 0, 0, None),
            (1, 0, 1, None),
            (2, 0, 3, None),
            (3, 0, 5, None)
        ]
    );
    // CPU 9 is allowed but not online (online is 0-5).
    let t = Topology::from_sysfs(&fixture("no_node_dir"), &[2, 9]).unwrap();
    assert_eq!(layout(&t), [(0, 0, 2, None)]);
}

#[test]
#[cfg_attr(miri, ignore)] // reads the file system
fn nodes_in_numeric_order_and_cpu_less_nodes_dropped() {
    // node10: 0-1, node2: 2-3, node5: no CPU; plus a `has_cpu` file.
    let t = Topology::from_sysfs(&fixture("sparse_nodes"), &(0..6).collect::<Vec<_>>()).unwrap();
    check_invariants(&t);
    assert_eq!(
        layout(&t),
        [
            (0, 0, 2, Some(2)),
            (1, 0, 3, Some(2)),
            (2, 1, 0, Some(10)),
            (3, 1, 1, Some(10)),
            // Online and allowed but in no node: its own region, last.
            (4, 2, 4, None),
            (5, 2, 5, None),
        ]
    );
}

#[test]
#[cfg_attr(miri, ignore)] // reads the file system
fn a_mask_excludes_cpus() {
    let root = fixture("two_nodes");
    let t = Topology::from_sysfs(&root, &[6, 1, 2, 42]).unwrap();
    check_invariants(&t);
    assert_eq!(
        layout(&t),
        [(0, 0, 1, Some(0)), (1, 0, 2, Some(0)), (2, 1, 6, Some(1))],
        "CPU 42 exists nowhere and is ignored"
    );

    // A mask that leaves node 0 with nothing: one region, node 1's.
    let t = Topology::from_sysfs(&root, &[7, 5]).unwrap();
    check_invariants(&t);
    assert_eq!(layout(&t), [(0, 0, 5, Some(1)), (1, 0, 7, Some(1))]);

    // Nothing usable is an error, not an empty topology.
    let e = Topology::from_sysfs(&root, &[]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    let e = Topology::from_sysfs(&fixture("offline_cpus"), &[4, 5]).unwrap_err();
    assert!(e.to_string().contains("no usable processor"), "{e}");
}

#[test]
#[cfg_attr(miri, ignore)] // reads the file system
fn a_malformed_cpulist_is_an_error_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("thread_aware_topology_{}", std::process::id()));
    let node = dir.join("devices/system/node/node0");
    std::fs::create_dir_all(&node).unwrap();
    std::fs::write(node.join("cpulist"), "0-x\n").unwrap();
    let e = Topology::from_sysfs(&dir, &[0]).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("node0"), "{e}");
}

#[test]
#[cfg_attr(miri, ignore)] // reads the file system
#[should_panic(expected = "does not belong to this topology")]
fn a_foreign_affinity_panics() {
    let t = Topology::from_sysfs(&fixture("two_nodes"), &[0, 1]).unwrap();
    let _ = t.cpu_id(create_manual_affinities(&[3])[0]);
}

/// The allowed CPUs of the calling thread, straight from libc.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero `cpu_set_t` is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live `cpu_set_t` and the size passed is its size.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's capacity.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

#[test]
#[cfg_attr(miri, ignore)] // system calls and /sys
fn the_real_machine() {
    let _watchdog = testkit::watchdog("the_real_machine");
    // A fresh thread: pinning must not leak into other tests' threads, and
    // its mask is the process's (the test harness pins nothing).
    std::thread::spawn(|| {
        let allowed = allowed_cpus();
        let t = Topology::current().expect("the real topology");
        check_invariants(&t);
        let mut ids: Vec<usize> = t.affinities().iter().map(|&a| t.cpu_id(a)).collect();
        ids.sort_unstable();
        assert!(
            ids.iter().all(|id| allowed.contains(id)),
            "{ids:?} vs {allowed:?}"
        );
        println!("{t:?}");

        assert_eq!(current_affinity(), None);
        for &a in t.affinities() {
            t.pin_current_thread(a).expect("pin");
            // SAFETY: `sched_getcpu` has no preconditions.
            let cpu = unsafe { libc::sched_getcpu() };
            assert_eq!(cpu, t.cpu_id(a) as i32, "pinned to {a}");
            assert_eq!(current_affinity(), Some(a));
            assert_eq!(allowed_cpus(), [t.cpu_id(a)], "the mask is that one CPU");
        }
        // The pinned thread now sees a one-processor machine.
        assert_eq!(Topology::current().unwrap().processor_count(), 1);
    })
    .join()
    .unwrap();
    // Other threads are untouched.
    assert_eq!(current_affinity(), None);
}

#[test]
#[cfg_attr(miri, ignore)] // system calls
fn pinning_to_a_cpu_outside_the_mask_fails_and_records_nothing() {
    let _watchdog = testkit::watchdog("pinning_to_a_cpu_outside_the_mask");
    std::thread::spawn(|| {
        // A made-up topology whose only CPU does not exist here.
        let dir = std::env::temp_dir().join(format!("thread_aware_pin_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Topology::from_sysfs(&dir, &[4000]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let before = allowed_cpus();
        let e = t.pin_current_thread(t.affinities()[0]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        assert_eq!(current_affinity(), None);
        assert_eq!(allowed_cpus(), before);
    })
    .join()
    .unwrap();
}

#[test]
fn set_current_affinity_records_without_pinning() {
    let _watchdog = testkit::watchdog("set_current_affinity_records_without_pinning");
    std::thread::spawn(|| {
        let a: Vec<MemoryAffinity> = create_manual_affinities(&[1, 2]);
        assert_eq!(current_affinity(), None);
        assert_eq!(thread_aware::set_current_affinity(Some(a[2])), None);
        assert_eq!(current_affinity(), Some(a[2]));
        assert_eq!(thread_aware::set_current_affinity(None), Some(a[2]));
        assert_eq!(current_affinity(), None);
    })
    .join()
    .unwrap();
}
