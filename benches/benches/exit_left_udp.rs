//! `exit-left` on loopback UDP: N owner threads behind one server socket, one
//! peer each, against the other ways to give every peer its own thread.
//!
//! # Workloads
//!
//! The client is the same code for every design: N client sockets ("peers"),
//! each bound to `127.0.0.1:0` and `connect`ed to the server's address. A
//! datagram is 16 bytes: the peer's index, a magic word and a sequence
//! number; the client checks that every echo is byte for byte the datagram
//! it sent (so its own, and the latest), and gives up with a panic if an
//! echo takes more than [`ECHO_TIMEOUT`].
//!
//! - **one at a time**: one client thread sends from peer k, waits for the
//!   echo on peer k's socket, then goes on to peer k + 1 (round robin). One
//!   datagram is in flight, so every datagram wakes the owner of a peer
//!   that has been idle for N - 1 round trips. This is where a broadcast
//!   design wakes N threads for one datagram.
//! - **all at once** (saturation): N client threads, one per peer, each
//!   ping-pongs (send, wait for the echo, repeat) concurrently: N datagrams
//!   in flight.
//! - **two busy** (N = 8 only): all at once with the first two peers only;
//!   the other six owners get nothing after the warm-up, as most peers of
//!   a real server are quiet at any time. Their threads wait in the
//!   design's way (a ticket in the queue, a condition variable, a channel)
//!   and show what idle owners cost the busy ones.
//!
//! Every run lasts `BENCH_RUN_MS` (default 150 ms) of client time after a
//! warm-up pass of one datagram per peer, and does at most a fixed number
//! of datagrams. N = 2, 8, 32 (and 8 for *two busy*).
//!
//! # Designs (the server side)
//!
//! Every owner thread echoes its own peer's datagrams, and only those.
//!
//! - **ours-blocking**: one unconnected socket in a
//!   `Stage<SocketAddr, UdpSocket, Vec<u8>>` (with a mailbox); each owner
//!   thread holds a ticket for its peer's address and runs
//!   `stage.serve(ticket, 1 s, read_one, echo)`, where `read_one` is one
//!   `recv_from` (the socket has a 5 ms read time-out so that the head
//!   notices deadlines and `close`) and `echo` answers with
//!   `stage.resource().send_to`. `serve` is the loop the crate recommends
//!   for saturated traffic: the head delivers others' datagrams to their
//!   owners' mailboxes (one wake-up each) and echoes its own between reads,
//!   lending the headship while it does (an owner back from its own echo
//!   takes the reading over at once; otherwise the head takes it back), or,
//!   when every other owner waits (or one other runs and nothing is there
//!   to read), handing it on to the longest waiter. The stage is made with
//!   `promote_when_readable()`: a hand-off made while the socket has
//!   nothing to read does not wake the follower but arms the socket in its
//!   parker's epoll set, so the kernel wakes it when its datagram arrives.
//! - **ours-eager**: `ours-blocking` on a stage made without
//!   `promote_when_readable()`: every hand-off wakes its follower at once
//!   (what the option buys, measured).
//! - **ours-recv**: `ours-blocking` with `stage.recv(ticket, 1 s, read_one)` in a
//!   loop, echoing after each call: `recv` keeps the headship while what the
//!   head reads belongs to others and hands it on when it reads its own, so
//!   every own datagram costs a hand-off (a follower's wake-up, with nobody
//!   reading meanwhile).
//! - **ours-async**: the same stage type around a non-blocking tokio
//!   `UdpSocket`, on one thread: a current-thread runtime and a `LocalSet`,
//!   one `spawn_local` task per peer (the `HeadGuard` is `!Send`). A task
//!   waits in `stage.enter_async(ticket)`; as head it awaits `recv_from`
//!   in a loop, `deliver`s others' datagrams and keeps the headship until
//!   its own arrives (the policy of `recv`); notified, it drains
//!   `stage.try_recv`. Every task runs on one thread, so this row uses one
//!   core for the whole server side.
//! - **socket-per-thread**: one socket per owner thread, all bound to the
//!   same port with `SO_REUSEPORT` and each `connect`ed to its peer, all
//!   created before any peer sends; the kernel routes each datagram to its
//!   owner's socket. No user-space routing at all: the floor.
//! - **reader-thread**: a dedicated reader thread does `recv_from` and sends
//!   each datagram over its owner's `std::sync::mpsc` channel; the owner
//!   echoes. One more thread, and two wake-ups per datagram when traffic is
//!   sparse (the reader's and the owner's).
//! - **broadcast**: `Mutex<{HashMap<SocketAddr, VecDeque<Vec<u8>>>, reading:
//!   bool}>` + `Condvar`. A thread that finds nothing in its own queue and
//!   sees no reader becomes the reader: it calls `recv_from` without the
//!   lock, and stores each datagram for someone else in that peer's queue
//!   and `notify_all`s. It *keeps* the reader role while what it reads
//!   belongs to others, and gives it up (`reading = false`, `notify_all`, so
//!   that a waiter takes over) when it reads its own datagram: the policy
//!   of ours. The one thing it cannot do is wake only the owner: every
//!   stored datagram wakes every waiter.
//! - **broadcast-plain**: the same, except that the reader gives the role
//!   up after every datagram it stores for someone else (`reading = false`,
//!   `notify_all`; a waiter, or the reader itself, takes it again): the
//!   design as the issue names it, a reader flag and `notify_all`, without
//!   the keep-reading policy. I expected it to pay for the extra hand-overs,
//!   as ours does; it does not (the waiters are woken anyway), and under
//!   saturation it is the *stronger* of the two, by far at N = 32 (measured
//!   before ours-blocking lent its headship while waking owners:
//!   ours-blocking / broadcast 1.90 quiet, 1.20 loaded; /
//!   broadcast-plain 0.95 and 0.92), where the keep-reading reader's every
//!   datagram wakes up to 31 waiters that find nothing and sleep again
//!   (27 µs of server CPU per datagram against 11). Both are reported.
//! - **keyed-condvars**: the keep-reading broadcast with one `Condvar` per
//!   peer and a FIFO of the owners that wait: storing a datagram wakes its
//!   owner only (if it waits), and the reader that reads its own gives the
//!   role up and wakes the longest waiter, but whoever comes first takes
//!   the role (the former reader too, back from its echo). The keyed
//!   wake-ups of ours in about 100 lines, without tickets, time-outs,
//!   cancellation, lending or promotion: what ours costs over the plain
//!   policy, and, against the broadcast, what keyed wake-ups win or lose as
//!   such (added 2026-12-04, see "What decides a loaded saturated run").
//!
//! Stopping is outside the measurement and the same for every design: the
//! design's own stop (a flag; `close` for ours; `notify_all` for broadcast),
//! then one empty datagram from every peer, which wakes whoever sits in a
//! blocking read. Empty datagrams are never echoed.
//!
//! # Counting context switches
//!
//! The operating system counts them (`getrusage`), not the designs:
//!
//! - **server cs / datagram**: every server thread of the design (owners,
//!   the reader thread, the async runtime's thread) reads its own
//!   `getrusage(RUSAGE_THREAD)` `ru_nvcsw + ru_nivcsw` when it starts and
//!   when it ends, and counts the datagrams it echoed; the column is the sum
//!   of the switches over the sum of the echoes. That window includes the
//!   warm-up pass and each thread's start and stop (one or two switches per
//!   thread: socket-per-thread, whose floor is exactly one, reads 1.02
//!   voluntary switches per datagram at N = 32 one at a time in 50 ms runs).
//!   The client's threads and the busy threads of loaded rounds are not in
//!   it. The voluntary switches alone (the thread blocked) are shown in
//!   brackets: the involuntary ones are preemptions, by the busy threads in
//!   loaded rounds and by whatever else runs on the host.
//! - **process cs / datagram**: `getrusage(RUSAGE_SELF)` over the timed
//!   window, read by the client's driving thread, over the datagrams of the
//!   window: server *and* client threads (the client's blocking receive is
//!   one more switch per datagram for every design), and in loaded rounds
//!   the busy threads' preemptions too.
//!
//! - **server CPU µs / datagram**: each server thread's own CPU time
//!   (`CLOCK_THREAD_CPUTIME_ID`) over the same window, added up, over the
//!   datagrams echoed: what a design costs the machine, which on a loaded
//!   host is what decides its throughput.
//!
//! A thread that blocks and is woken is one voluntary switch. Per datagram
//! one at a time, the floor is one (the owner, for socket-per-thread); a
//! design that reads on one thread and hands over to the owner on another
//! pays up to two (the reader sleeping until the next datagram, and the
//! owner: reader-thread, ours-eager), less when the reader is the owner
//! (ours-blocking and ours-recv hand the headship to the longest waiter
//! when the head reads its own datagram and the others wait: with peers
//! taking turns, that is the next datagram's owner; ours-eager wakes it at
//! once, and it sleeps again in the read unless the datagram is there,
//! measured here quiet 1.3-1.7; ours-blocking and ours-recv arm the socket
//! in its epoll set instead, and the kernel wakes it when the datagram
//! arrives: one voluntary switch, as for socket-per-thread; reader-thread
//! 2.2-2.4); broadcast wakes every waiter, about N; ours-async runs every
//! task on one thread and pays one (the runtime thread sleeping in
//! `epoll_wait`).
//!
//! # Steal
//!
//! Every run also records the host's steal share over its timed part
//! ([`benches::steal`]): the time the hypervisor left a vCPU that had work
//! waiting. It is shown in the round lines and summed up under the key
//! figures. Measured here (2 vCPUs, saturated N = 8, 15 rounds): quiet runs
//! 0-41% (median 2-18% per design), loaded runs 0-13% (median 2%); over a
//! whole default run, quiet median 34% (max 60%), loaded 3% (max 50%).
//! Quiet steal depends on the design, since it comes with the host's delay
//! in resuming an idle vCPU, which a design that sleeps more pays more
//! often; loaded rounds keep both vCPUs busy, so their steal is not the
//! design's, and it is low. So the swing of the loaded saturated ratios (per round
//! 0.67-1.76 against broadcast at N = 8 in that run, 0.77-1.76 in the
//! rounds where both runs saw at most 5% steal) is not the host's: it is
//! how the scheduler happens to interleave 2N threads and two busy ones in
//! that run. Ours-blocking has a fast regime (about 9 µs of server CPU per
//! datagram: its head reads many of its own datagrams, and deliveries find
//! their owners still running) and a slow one (about 13.5 µs: most
//! deliveries wake a parked owner), and which one a run lands in varies
//! from run to run with the code unchanged.
//!
//! # What decides a loaded saturated run (measured 2026-12-02)
//!
//! - **Where the busy threads run.** Until then the busy threads were not
//!   pinned, and a probe (`sched_getcpu` in the busy loop) found the two on
//!   one CPU for 0-100% of a run (a few percent in most, 50-100% in some),
//!   which leaves a whole core to the server and turns a loaded run into a
//!   half-quiet one. The harness now pins one to each CPU
//!   ([`benches::interleaved::Load`]).
//! - **Two regimes per run, for every design that routes.** With the load
//!   pinned, a 150 ms run of ours-blocking at N = 8 lands either in a fast
//!   regime (about 0.7 voluntary switches and 8 µs of server CPU per
//!   datagram, 90-100k datagrams/s; the stage's counters: the head reads
//!   its own peer's datagram in 43% of its reads, 41% of deliveries wake a
//!   parked owner) or a slow one (0.9-0.97 and 10 µs, 70-80k/s; own 31%,
//!   woken 56%). The broadcast has the same two, further apart (0.54-0.70
//!   and 1.1-1.45 voluntary switches). In the fast regime the two designs
//!   are level (8.1 against 7.8 µs per datagram); in the slow one ours is
//!   ahead.
//! - **What ran just before.** The regime depends on the scheduler's recent
//!   history, not only on the design: the broadcast alone at all-8 (10
//!   rounds) mixed the regimes (median 0.94 voluntary switches per datagram);
//!   right after a loaded one-at-a-time cell it ran fast in 9 runs of 10
//!   (one-8) and 7 of 10 (one-32; medians 0.71 and 0.69), right after all-32
//!   mixed again (1.00). Ours moved the same way (0.91 alone, 0.74 after
//!   one-8). Not the busy threads' age (a 1.2 s pause with the load running
//!   before the cell changed nothing), not ksoftirqd (under 0.1 µs per
//!   datagram either way), not leftover threads or descriptors, not the
//!   stage's lock (of 41,900 `futex` waits in six ours-blocking runs, 33 were
//!   on a contended lock, the rest parked owners); the cause is inside the
//!   kernel's scheduler and was not found. When the rounds ran in a fixed
//!   order (designs rotated, cells never), all-8 always followed one-32 and
//!   all-2, so both designs mostly ran fast there and the loaded N = 8
//!   ratio read level (0.98-1.01 in three runs, 0.98 over 25 rounds), while
//!   the cell run alone (15 rounds) read 1.04 pinned and 1.16 unpinned.
//!   Since 2026-12-03 every round shuffles the cells and the designs
//!   (`Shuffle`), so every design meets every predecessor.
//! - **On a second VM** (same type, kernel 6.18, measured later that day),
//!   the same: ours-blocking / broadcast at loaded N = 8 read 0.86-0.92 in
//!   full or partial runs, but with only the loaded rounds and only that
//!   cell (a scratch change) 1.53, 1.12, 1.34 and 0.94 depending on which
//!   designs ran beside it (per-round ratios 0.46-2.2), 1.38 right after
//!   the loaded all-2 cell and 0.87 right after loaded one-32, where the
//!   broadcast ran in its fast regime (0.45 voluntary switches per datagram
//!   against 1.2-1.3 in its slow one).
//! - **On a third VM** (same type, kernel 6.18, 2026-12-03), the first
//!   runs with the order shuffled (seeds 1, 2, 3; 9, 9 and 15 rounds):
//!   ours-blocking / broadcast at N = 8 saturated 0.99, 0.99, 1.01 quiet and
//!   0.96, 0.98, 0.97 loaded (per round 0.65-1.68): level, a few percent
//!   either way, in every run.
//! - **On a fourth VM** (same type, 2026-12-04; seeds 1, 2, 3, 9 rounds
//!   each): ours-blocking / broadcast at N = 8 saturated 1.05, 1.02, 1.04
//!   quiet and 0.85, 0.97, 0.98 loaded; server CPU per datagram at loaded
//!   N = 8 10.3-11.8 µs for ours against 9.9-10.3 for the broadcast. A
//!   `perf record` of ours-blocking alone there (all-8, four rounds of
//!   400 ms, the whole process: clients and busy threads too) has its
//!   top kernel entries in the scheduler and in wake-ups (18% switching,
//!   of which 5.7% a follower's `futex` park; 18% waking, of which 5.1%
//!   the stage's wakes of parked owners, the rest the socket's own
//!   wake-ups of blocked readers) and 0.6% in the follower spin: no
//!   user-space hot spot left to remove.
//! - **On a fifth VM** (same type, 2026-12-04), a full run (seed 1) had
//!   that cell fast in every round, for both designs (server CPU per
//!   datagram 3.8-4.5 µs for ours-blocking, 3.1-4.1 for the broadcast;
//!   0.92 loaded). A scratch knob that runs a one-at-a-time N = 32 run of
//!   another design before every measured run reproduces that regime in
//!   seconds (the cell alone, without it, runs mostly slow, where ours
//!   leads: 1.08). There (scratch counters, 9-30 rounds): the head reads
//!   its own datagram in 63-68% of reads (the broadcast's reader 60-64%);
//!   a follower sleeps for 0.23-0.29 datagrams of every one (the
//!   broadcast's waiters 0.20-0.37); per datagram, from tracepoints, 4.6
//!   system calls against 5.3 (`futex` 0.56 against 1.36), 2.1-2.2
//!   context switches both, 1.6-1.7 wake-ups against 1.5, rescheduling
//!   IPIs 0.04 both. The bench process's CPU share is the same for both
//!   (server plus client threads 1.32-1.35 CPUs), so the throughput gap
//!   is CPU per datagram: server 4.7 against 4.2 µs, clients 2.6 both;
//!   about half of the server's 0.5 µs in user space (perf: the stage's
//!   functions, the follower spin, clock reads). Interleaved A/B in that
//!   regime (ours-blocking against a scratch variant, 15-30 rounds): no
//!   follower spin 1.03-1.05x in five runs (hence `spin_cap` in the
//!   stage); two extra lock round trips on every own datagram 0.996x
//!   (locks are not the cost); no follower time-out plus a deadline check
//!   only every eighth read 1.016x (not taken: within the noise); no
//!   lending while waking 0.94x; lending even when every other owner
//!   waits 1.03x in one run (not taken: one at a time it costs, README).
//!   Three full runs with the spin cap (seeds 1, 2, 3): 1.00, 0.97, 0.96
//!   against the broadcast at loaded N = 8, 0.89-0.91 against the plain
//!   broadcast.
//! - **Later on the fifth VM** (same code), three more full runs (seeds 1,
//!   2, 3) read 0.86, 0.97, 0.91 against the broadcast at loaded N = 8 and
//!   0.82, 0.90, 0.89 against the plain one (server CPU per datagram 4.0-4.2
//!   µs against 3.4-3.6). Scratch counters in the fast regime (`getrusage`
//!   around every read and every park, 8-12 rounds): a server thread's
//!   voluntary switches are its blocking reads plus its parks, for both
//!   designs; ours 0.20-0.40 and 0.25-0.35 per datagram, the plain broadcast
//!   0.16-0.30 and 0.17-0.27 (43 and 45 rounds). The rest of the flow
//!   matches: back from its own datagram a thread heads (or reads) next in
//!   about 0.6 of the cases and waits in 0.2-0.3, for both; the reading
//!   moves to another thread after 0.20-0.28 of reads for ours and
//!   0.26-0.41 for the plain broadcast, whose reader reads its own datagram
//!   more often (0.62-0.70 against 0.53-0.64). `perf record` of the server threads (4999
//!   Hz, per datagram): 14% more samples for ours, half of the excess in
//!   user space (the stage's functions, allocation, clock reads), half in
//!   the kernel's receive and `futex` paths (those extra sleeps). A/B in
//!   that regime against ours-blocking (10-12 rounds each), none better:
//!   yield before a read that would block 0.31x (the yield goes to a busy
//!   thread); a 0.8 µs pause before every read 0.85x; keep the headship
//!   while handling the own datagram 0.67x; hand on to the longest waiter
//!   whenever one waits 0.35x; lend even when all others wait 0.98x; lend
//!   after every routed datagram, not only while waking 0.95x; wake the
//!   longest waiter when lending, to head if the headship is still free
//!   1.01x (it raised own reads to 0.67-0.71 but cost as many wake-ups as
//!   it saved); a 1 s socket time-out instead of 5 ms 0.98x; eight more
//!   cache lines written per routed datagram 0.98x (cache traffic is not
//!   where the gap is either).
//! - **On a sixth VM** (same type, 2026-12-04), `keyed-condvars` (the
//!   policy of ours in the fewest lines) separates the policy from our
//!   machinery. A/B of the loaded all-8 cell alone (`BENCH_WARM`, 16-30
//!   rounds, four runs): the broadcast 1.00-1.05x keyed-condvars and
//!   1.06-1.15x ours-blocking (server CPU per datagram 4.4-4.9, 4.75-4.9 and
//!   4.9-5.5 µs), keyed-condvars 1.00-1.09x ours-blocking; quiet,
//!   keyed-condvars 1.06-1.08x ours-blocking and the broadcast 0.88-0.91x
//!   keyed-condvars. Two full runs (seeds 1, 2): ours-blocking /
//!   keyed-condvars 0.93, 0.95 quiet and 1.03, 0.97 loaded at N = 8; /
//!   broadcast 0.95, 0.91 loaded. So part of the gap is the keyed policy,
//!   part our bookkeeping. Scratch variants of keyed-condvars (20 rounds):
//!   waking every waiter when the reader gives the role up 1.00x quiet,
//!   1.03x loaded; also waking the longest waiter with every stored
//!   datagram, ahead of its own (the broadcast's early wake-ups, in part)
//!   0.93x quiet, 0.98x loaded: early wake-ups alone are not the
//!   broadcast's edge. Scratch variants of ours in that cell (16-30 rounds
//!   each, against ours-blocking): no lending while waking 0.95x; lending
//!   instead of handing on when the socket has something to read 1.00x
//!   and 1.03x; never handing on 1.02x loaded, 1.04x quiet; followers
//!   spinning at N = 8 0.95x; deciding and lending under one lock, with the reclaimed
//!   headship taking the head's mail under the lock that takes it back
//!   (two lock round trips fewer per own datagram) 1.03x quiet and
//!   1.00-1.03x loaded, kept since (it is simpler too); also lending under
//!   the routing's lock while waking 0.99x, not kept. Counted by
//!   `sched_switch` (perf, 6 rounds, where throughput halves): ours' head
//!   blocks in `recv_from` more often than the broadcast's reader (about
//!   0.42 against 0.32 per datagram) and its followers park less (0.39
//!   against 0.47).
//! - **Later on the sixth VM** (same code as then, seeds 3, 4, 5, 6, 9 + 9
//!   rounds each): ours-blocking / broadcast at N = 8 saturated 1.06,
//!   1.08, 1.05, 1.06 quiet and **0.96, 1.00, 0.92, 1.02** loaded (the 36
//!   loaded rounds pooled: median of the per-round ratios 0.95, 90%
//!   bootstrap interval 0.91-1.02, per round 0.70-1.35); / keyed-condvars
//!   0.94-0.97 quiet and 0.91-1.00 loaded. In that loaded cell the three
//!   designs switch about as often in all (1.12-1.22 per datagram), but
//!   more of ours' switches are voluntary (0.54-0.78 against the
//!   broadcast's 0.48-0.53 and keyed-condvars' 0.53-0.63): a thread of ours
//!   blocks where a broadcast waiter, woken early, is preempted instead,
//!   and a blocked thread costs a wake-up besides. Server CPU per datagram
//!   there 3.9-5.7 µs for ours against 3.5-5.1 (broadcast) and 3.9-5.3
//!   (keyed-condvars), by regime. A scratch change with strictly less work
//!   per operation (the lock taken with `try_lock` first so that a free
//!   lock never reads the `Eq` guard's cache line, which every lookup
//!   writes; the thread's id cached in a thread-local instead of
//!   `thread::current()` per entry; `serve` and `recv` passing their
//!   deadline on instead of a time-out, one clock read fewer per entry)
//!   measured 1.00x: the same 4.40 µs of server CPU per datagram, 60
//!   rounds each in six alternating runs of the warm loaded cell; not
//!   kept. System calls per datagram,
//!   quiet all-8 (`perf stat` tracepoints, server and client, six rounds):
//!   ours 5.4 (`futex` 1.35), keyed-condvars 5.7 (1.66), broadcast 6.4
//!   (2.41): ours makes the fewest. `perf record` of the server threads
//!   there (cpu-clock, 4999 Hz, eight rounds): ours' user-space samples per
//!   datagram 1.31x keyed-condvars', its kernel samples 0.92x; of ours'
//!   user space, clock reads (deadlines) about 10%, the thread parker (std's
//!   `park_timeout`, `thread::current`) 11%, the stage's functions 36%,
//!   where the annotated hot spots are the lock's `cmpxchg` and first reads
//!   of the stage's and a slot's cache lines (misses on data shared between
//!   the CPUs, not instructions), libc (system call wrappers, `malloc`)
//!   29%, as for keyed-condvars. Two more full runs there (seeds 7, 8,
//!   same code): 1.12, 1.04 quiet and 0.91, 0.89 loaded (/ keyed-condvars
//!   1.00 and 1.13 loaded: in the second, keyed-condvars, the same keyed
//!   policy in few lines, fell further behind the broadcast than ours
//!   did). Seeds 9, 10 (the first runs with the
//!   pooled section, below): 0.95, 0.93; seeds 11, 12: 0.92, 0.90 (pooled
//!   0.92, 90% interval 0.90-0.93). The ten runs on that VM: median 0.925.
//! - **Still on the sixth VM** (2026-12-05, same code), the loaded all-8
//!   cell alone. With `BENCH_WARM` (fast regime) ours-blocking / broadcast
//!   read 0.94, 0.91, 0.96, 0.96 (20-30 rounds each; ours-eager level with
//!   ours-blocking, 1.00x). Without it, each run of either design lands
//!   fast (160-210k datagrams/s, 3.9-4.9 µs of server CPU and 0.4-0.66
//!   voluntary switches per datagram) or slow (80-120k, 7-9 µs, 0.9-1.3),
//!   whatever the other design's run did, so the per-round ratios swing
//!   0.45-2.1 (two sets of 14 rounds). Not the allocator: with
//!   `MALLOC_ARENA_MAX=1` (every design's reading thread allocates a `Vec`
//!   per datagram that the owner's thread frees) the warm cell read 1.00,
//!   0.90, 0.94, against 0.94, 0.91, 0.96 with glibc's default arenas.
//!   Placement plays a part but does not decide it: sampling every thread's
//!   last CPU from `/proc` every 20 ms over 24 one-second runs, the faster
//!   runs had the eight server threads split 4/4 or 3/5, but so did some
//!   slow ones, and others had all eight on one CPU (the sampler itself
//!   pushed most runs slow).
//!
//! # Rounds and how to read the tables
//!
//! Interleaved rounds in one process (`benches::interleaved` says why): in
//! every round each design runs once per (workload, N), the order of the
//! cells and of the designs within each cell shuffled afresh in every round
//! (seed `BENCH_SEED`, default 1); quiet and loaded rounds alternate
//! (loaded = one busy thread pinned to each core, [`benches::interleaved::Load`]).
//! Default 9 quiet + 9 loaded rounds (with five, the loaded medians were a
//! coin toss: per-round ratios swing 0.7-1.9 at N = 8); `BENCH_ROUNDS` and
//! `BENCH_RUN_MS` override. Every full run saves its rounds
//! ([`benches::pool`], `target/bench-rounds/`); from the second full run of
//! one build on, the report ends with the saturated throughput ratios pooled
//! over every run of that build with the same `BENCH_ROUNDS` and
//! `BENCH_RUN_MS` (median of all per-round ratios, a 90%
//! bootstrap interval, the per-run medians against the broadcast): loaded
//! rows are to be judged over several runs (workspace spec), and a run with
//! another `BENCH_SEED` is one more. A rebuilt bench starts a new pool.
//! Per mode, each row is the median over rounds of datagrams/s,
//! of p50 and p99 client round trip (each run keeps a bounded sample of
//! per-datagram round trips, [`SAMPLE_CAP`]), and of switches per datagram,
//! plus the median of per-round ratios *ours-blocking / this design*:
//!
//! - **throughput, ours / this**: above 1.00 ours-blocking moved more
//!   datagrams per second than this design in the same round;
//! - **server cs, ours / this**: below 1.00 ours-blocking made fewer
//!   context switches per datagram.
//!
//! A median of per-round ratios is not the ratio of the medians: it
//! compares the designs within one round, which is what to trust on a host
//! whose speed drifts. After the two full tables, "Key figures" repeats the
//! one-at-a-time switches per datagram of every design and the saturated
//! throughput ratios, one column per (mode, N).
//!
//! While developing, `BENCH_CELL=all-8` (`one-2`, ..., `all-32`, or a
//! comma-separated list) runs those cells only, and
//! `BENCH_DESIGN=ours-blocking` (with `BENCH_CELL`) one design, or a
//! comma-separated list of them, interleaved as usual, printing the rounds
//! and no report (for example under `perf record`). With `BENCH_CELL`
//! also: `BENCH_MODE=loaded` (or `quiet`) runs that mode only, and
//! `BENCH_WARM=socket-per-thread` (any design) runs that design once, one
//! at a time with 32 owners and untimed, before every measured run: the
//! loaded N = 8 saturated cell then runs in its fast regime, as in a full
//! run (see "What decides a loaded saturated run"), in seconds.
//!
//! `--test` (`cargo bench -p benches -- --test`) is the smoke test: one
//! quiet round, each design once per (workload, N), a few dozen datagrams
//! each, every echo checked, and the echo count of the server checked
//! against what the client sent. Writes
//! `target/bench-report.d/exit_left_udp.md` (not in smoke mode).

use benches::interleaved::{Load, Settings, busy_threads, thread_cpu};
use benches::median;
use benches::steal;
use exit_left::{Entry, NotifyOutcome, RecvError, Stage};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Owner threads (and peers) per run.
const NS: [usize; 3] = [2, 8, 32];
/// The longest a client waits for one echo before it declares the datagram
/// lost (a failure of the design, not a slow run).
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a design may take to start or to stop.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many per-datagram round trips a run keeps (a ring: the latest).
const SAMPLE_CAP: usize = 1 << 16;
/// Read time-out of a socket whose reader must notice deadlines (ours'
/// head: `recv`'s `read_one` must return in bounded time).
const HEAD_READ_TIMEOUT: Duration = Duration::from_millis(5);
/// Read time-out of the other designs' blocking sockets: only a safety net,
/// since stopping sends every blocked reader a datagram. Long, so that an
/// idle owner is not woken by it (which would count as a switch).
const SAFETY_READ_TIMEOUT: Duration = Duration::from_secs(1);
const MAGIC: u32 = 0x00e1_1e7f;

// ---------------------------------------------------------------- counters

/// Context switches counted by the kernel: voluntary (the thread blocked)
/// and involuntary (it was preempted).
#[derive(Clone, Copy, Default)]
struct Switches {
    voluntary: u64,
    involuntary: u64,
}

impl Switches {
    fn total(self) -> u64 {
        self.voluntary + self.involuntary
    }
}

impl std::ops::Sub for Switches {
    type Output = Switches;
    fn sub(self, earlier: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary - earlier.voluntary,
            involuntary: self.involuntary - earlier.involuntary,
        }
    }
}

impl std::ops::AddAssign for Switches {
    fn add_assign(&mut self, other: Switches) {
        self.voluntary += other.voluntary;
        self.involuntary += other.involuntary;
    }
}

fn rusage(who: libc::c_int) -> Switches {
    // SAFETY: `rusage` is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; the call only writes it.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed: {}", io::Error::last_os_error());
    Switches {
        voluntary: ru.ru_nvcsw as u64,
        involuntary: ru.ru_nivcsw as u64,
    }
}

/// The calling thread's context switches so far.
fn thread_switches() -> Switches {
    rusage(libc::RUSAGE_THREAD)
}

/// The whole process's context switches so far.
fn process_switches() -> Switches {
    rusage(libc::RUSAGE_SELF)
}

// ------------------------------------------------------- the server, shared

/// What one server thread reports when it ends.
struct Report {
    switches: Switches,
    /// CPU time the thread used (user + system).
    cpu: Duration,
    echoed: u64,
}

/// A running design: its address, how to stop it, and its threads.
struct Server {
    addr: SocketAddr,
    stop: Box<dyn FnOnce()>,
    reports: mpsc::Receiver<Report>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts a design's threads: each reads its own switch counter first,
/// signals when it is ready to serve, and reports its switches and echoes
/// when it ends.
struct ServerBuilder {
    reports_tx: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
    ready_tx: mpsc::Sender<()>,
    ready: mpsc::Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerBuilder {
    fn new() -> Self {
        let (reports_tx, reports) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        ServerBuilder {
            reports_tx,
            reports,
            ready_tx,
            ready,
            threads: Vec::new(),
        }
    }

    /// `body(ready)` serves until stopped and returns how many datagrams it
    /// echoed; it calls `ready()` once it can serve.
    fn spawn(&mut self, body: impl FnOnce(&dyn Fn()) -> u64 + Send + 'static) {
        let reports = self.reports_tx.clone();
        let ready = self.ready_tx.clone();
        let t = thread::Builder::new()
            .name("server".into())
            .spawn(move || {
                let (switches, cpu) = (thread_switches(), thread_cpu());
                let echoed = body(&|| ready.send(()).unwrap());
                let _ = reports.send(Report {
                    switches: thread_switches() - switches,
                    cpu: thread_cpu() - cpu,
                    echoed,
                });
            })
            .expect("spawning a server thread");
        self.threads.push(t);
    }

    /// Waits until every thread is ready.
    fn finish(self, addr: SocketAddr, stop: impl FnOnce() + 'static) -> Server {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        for _ in 0..self.threads.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.ready
                .recv_timeout(left)
                .expect("a server thread did not get ready in time");
        }
        Server {
            addr,
            stop: Box::new(stop),
            reports: self.reports,
            threads: self.threads,
        }
    }
}

impl Server {
    /// Stops the design (its own stop, then an empty datagram from every
    /// peer) and returns its threads' switches and echoes, added up.
    fn shut_down(self, peers: &Peers) -> Report {
        (self.stop)();
        for s in &peers.socks {
            s.send(&[]).expect("sending the stop datagram");
        }
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut total = Report {
            switches: Switches::default(),
            cpu: Duration::ZERO,
            echoed: 0,
        };
        for _ in 0..self.threads.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self
                .reports
                .recv_timeout(left)
                .expect("a server thread did not stop in time");
            total.switches += r.switches;
            total.cpu += r.cpu;
            total.echoed += r.echoed;
        }
        for t in self.threads {
            t.join().expect("a server thread panicked");
        }
        total
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn loopback_socket(read_timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    s.set_read_timeout(Some(read_timeout)).unwrap();
    s
}

// ------------------------------------------------------------ ours-blocking

type OurStage<R> = Stage<SocketAddr, R, Vec<u8>>;

fn read_one(s: &UdpSocket) -> io::Result<Option<(SocketAddr, Vec<u8>)>> {
    let mut buf = [0u8; 64];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => Ok(Some((from, buf[..n].to_vec()))),
        Err(e) if is_timeout(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An owner thread's loop: stage, its ticket, its peer, the stop flag;
/// returns how many datagrams it echoed.
type OwnerLoop = fn(&OurStage<UdpSocket>, &mut OurTicket<'_>, SocketAddr, &AtomicBool) -> u64;
type OurTicket<'s> = exit_left::Ticket<'s, SocketAddr, UdpSocket, Vec<u8>>;

/// One blocking owner thread per peer around one stage; `owner` is the
/// thread's loop (returns how many datagrams it echoed). Stopping sets the
/// flag and closes the stage.
fn ours_threads(peers: &[SocketAddr], owner: OwnerLoop, gated: bool) -> Server {
    let sock = loopback_socket(HEAD_READ_TIMEOUT);
    let addr = sock.local_addr().unwrap();
    let mut stage = Stage::with_mailbox(sock);
    if gated {
        stage = stage.promote_when_readable();
    }
    let stage: Arc<OurStage<UdpSocket>> = Arc::new(stage);
    let stop = Arc::new(AtomicBool::new(false));
    let mut b = ServerBuilder::new();
    for &peer in peers {
        let (stage, stop) = (Arc::clone(&stage), Arc::clone(&stop));
        b.spawn(move |ready| {
            let mut ticket = stage.ticket(peer).expect("one ticket per peer");
            ready();
            owner(&stage, &mut ticket, peer, &stop)
        });
    }
    b.finish(addr, move || {
        stop.store(true, Ordering::Relaxed);
        stage.close();
    })
}

fn ours_blocking(peers: &[SocketAddr]) -> Server {
    ours_threads(peers, serve_loop, true)
}

fn ours_eager(peers: &[SocketAddr]) -> Server {
    ours_threads(peers, serve_loop, false)
}

fn serve_loop(
    stage: &OurStage<UdpSocket>,
    ticket: &mut OurTicket<'_>,
    peer: SocketAddr,
    stop: &AtomicBool,
) -> u64 {
    {
        let mut echoed = 0;
        loop {
            let served = stage.serve(
                ticket,
                Some(Duration::from_secs(1)),
                read_one,
                |m: Vec<u8>| {
                    if m.is_empty() {
                        return if stop.load(Ordering::Relaxed) {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        };
                    }
                    stage.resource().send_to(&m, peer).expect("echo");
                    echoed += 1;
                    ControlFlow::Continue(())
                },
            );
            match served {
                Ok(()) | Err(RecvError::Closed) => return echoed,
                Err(RecvError::TimedOut) if stop.load(Ordering::Relaxed) => return echoed,
                Err(RecvError::TimedOut) => {}
                Err(RecvError::Read(e)) => panic!("ours-blocking: recv_from failed: {e}"),
            }
        }
    }
}

// ---------------------------------------------------------------- ours-recv

fn ours_recv(peers: &[SocketAddr]) -> Server {
    ours_threads(
        peers,
        |stage, ticket, peer, stop| {
            let mut echoed = 0;
            loop {
                match stage.recv(ticket, Some(Duration::from_secs(1)), read_one) {
                    Ok(m) if m.is_empty() => {}
                    Ok(m) => {
                        stage.resource().send_to(&m, peer).expect("echo");
                        echoed += 1;
                        continue;
                    }
                    Err(RecvError::TimedOut) => {}
                    Err(RecvError::Closed) => return echoed,
                    Err(RecvError::Read(e)) => panic!("ours-recv: recv_from failed: {e}"),
                }
                if stop.load(Ordering::Relaxed) {
                    return echoed;
                }
            }
        },
        true,
    )
}

// --------------------------------------------------------------- ours-async

/// One peer's task: wait on the stage; as head read and route until this
/// peer's own datagram arrives; echo.
async fn ours_async_task(
    stage: Arc<OurStage<tokio::net::UdpSocket>>,
    peer: SocketAddr,
    echoed: Rc<Cell<u64>>,
) {
    let mut ticket = stage.ticket(peer).expect("one ticket per peer");
    let mut buf = [0u8; 64];
    loop {
        while let Some(m) = stage.try_recv(&mut ticket) {
            if !m.is_empty() {
                stage.resource().send_to(&m, peer).await.expect("echo");
                echoed.set(echoed.get() + 1);
            }
        }
        let own = match stage.enter_async(&mut ticket).await {
            Entry::Notified => continue,
            Entry::Closed => return,
            Entry::TimedOut => unreachable!("enter_async has no time-out"),
            Entry::Head(head) => loop {
                // Delivered by someone else meanwhile (not in this bench,
                // but this is `recv`'s loop).
                if let Some(m) = head.try_recv_own() {
                    break m;
                }
                let (n, from) = head
                    .resource()
                    .recv_from(&mut buf)
                    .await
                    .expect("ours-async: recv_from failed");
                if n == 0 && stage.is_closed() {
                    return; // dropping `head` hands the headship on
                }
                // Someone else's: delivered (one wake-up), read on.
                // A stranger's: dropped.
                if let Ok(NotifyOutcome::OwnToken) = head.deliver(&from, buf[..n].to_vec()) {
                    break head.try_recv_own().expect("the head's own datagram");
                }
            },
        };
        // The headship went on when `head` was dropped at the loop's end.
        if !own.is_empty() {
            stage.resource().send_to(&own, peer).await.expect("echo");
            echoed.set(echoed.get() + 1);
        }
    }
}

fn ours_async(peers: &[SocketAddr]) -> Server {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_nonblocking(true).unwrap();
    let addr = sock.local_addr().unwrap();
    let peers = peers.to_vec();
    let (stage_tx, stage_rx) = mpsc::channel();
    let mut b = ServerBuilder::new();
    b.spawn(move |ready| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let sock = {
            let _in_rt = rt.enter();
            tokio::net::UdpSocket::from_std(sock).unwrap()
        };
        let stage: Arc<OurStage<tokio::net::UdpSocket>> = Arc::new(Stage::with_mailbox(sock));
        let echoed = Rc::new(Cell::new(0));
        let local = tokio::task::LocalSet::new();
        let tasks: Vec<_> = peers
            .iter()
            .map(|&p| local.spawn_local(ours_async_task(Arc::clone(&stage), p, Rc::clone(&echoed))))
            .collect();
        local.block_on(&rt, async {
            // Every task has its ticket before the client sends.
            let mut yields = 0;
            while stage.tickets() < peers.len() {
                yields += 1;
                assert!(yields < 1_000_000, "ours-async: the tasks did not start");
                tokio::task::yield_now().await;
            }
            stage_tx.send(Arc::clone(&stage)).unwrap();
            ready();
            for t in tasks {
                t.await.expect("an ours-async task panicked");
            }
        });
        echoed.get()
    });
    let stage = stage_rx
        .recv_timeout(SETUP_TIMEOUT)
        .expect("ours-async did not start");
    // Once called, the closure (and its `Arc`) is dropped before the server
    // thread ends, so the socket goes with the runtime it is registered in.
    b.finish(addr, move || stage.close())
}

// -------------------------------------------------------- socket-per-thread

/// A UDP socket with `SO_REUSEPORT`, bound to `127.0.0.1:port`.
fn reuseport_socket(port: u16) -> io::Result<UdpSocket> {
    // SAFETY: `socket` takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by `socket` and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let one: libc::c_int = 1;
    // SAFETY: `raw` is an open socket; the option value points to a c_int
    // that lives across the call, and the length says so.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `raw` is an open socket; `sin` is a valid sockaddr_in that
    // lives across the call, and the length is its size.
    let rc = unsafe {
        libc::bind(
            raw,
            (&sin as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UdpSocket::from(fd))
}

fn socket_per_thread(peers: &[SocketAddr]) -> Server {
    // Every socket bound and connected before any peer sends: the kernel
    // picks the connected socket only if it exists when the datagram comes.
    let first = reuseport_socket(0).expect("SO_REUSEPORT socket");
    let addr = first.local_addr().unwrap();
    let mut socks = vec![first];
    for _ in 1..peers.len() {
        socks.push(reuseport_socket(addr.port()).expect("SO_REUSEPORT socket on the same port"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut b = ServerBuilder::new();
    for (sock, &peer) in socks.into_iter().zip(peers) {
        sock.connect(peer).unwrap();
        sock.set_read_timeout(Some(SAFETY_READ_TIMEOUT)).unwrap();
        let stop = Arc::clone(&stop);
        b.spawn(move |ready| {
            ready();
            let mut buf = [0u8; 64];
            let mut echoed = 0;
            loop {
                match sock.recv(&mut buf) {
                    Ok(0) => {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    Ok(n) => {
                        sock.send(&buf[..n]).expect("echo");
                        echoed += 1;
                    }
                    Err(e) if is_timeout(&e) => {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    Err(e) => panic!("socket-per-thread: recv failed: {e}"),
                }
            }
            echoed
        });
    }
    b.finish(addr, move || stop.store(true, Ordering::Relaxed))
}

// ------------------------------------------------------------ reader-thread

fn reader_thread(peers: &[SocketAddr]) -> Server {
    let sock = Arc::new(loopback_socket(SAFETY_READ_TIMEOUT));
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut b = ServerBuilder::new();
    let mut routes = HashMap::new();
    for &peer in peers {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        routes.insert(peer, tx);
        let sock = Arc::clone(&sock);
        b.spawn(move |ready| {
            ready();
            let mut echoed = 0;
            // Ends when the reader drops the senders.
            while let Ok(m) = rx.recv() {
                sock.send_to(&m, peer).expect("echo");
                echoed += 1;
            }
            echoed
        });
    }
    let stop2 = Arc::clone(&stop);
    b.spawn(move |ready| {
        ready();
        let mut buf = [0u8; 64];
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, from)) if n > 0 => {
                    if let Some(tx) = routes.get(&from) {
                        tx.send(buf[..n].to_vec()).unwrap();
                    }
                }
                Ok(_) => {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                }
                Err(e) if is_timeout(&e) => {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                }
                Err(e) => panic!("reader-thread: recv_from failed: {e}"),
            }
        }
        0
    });
    b.finish(addr, move || stop.store(true, Ordering::Relaxed))
}

// ------------------------------------------- broadcast and keyed-condvars

/// The designs that pass a reader role around with a flag under one lock:
/// the broadcast (both variants) and keyed-condvars. They differ only in
/// how they wake (`Wakes`) and in whether the reader keeps the role while
/// what it reads is others'.
struct RoleServer {
    name: &'static str,
    state: Mutex<RoleState>,
    wakes: Wakes,
    sock: UdpSocket,
    /// The reader keeps the role while what it reads is others' (the
    /// well-built broadcast, keyed-condvars); otherwise it gives the role
    /// up after every datagram (the plain broadcast).
    keep_reading: bool,
}

/// How a [`RoleServer`] wakes the owners that wait.
enum Wakes {
    /// One condition variable, `notify_all`: every stored datagram and every
    /// freed role wakes every waiter (the broadcast).
    All(Condvar),
    /// One condition variable per peer, its owner alone waiting on it: a
    /// stored datagram wakes its owner only, if it waits; a freed role wakes
    /// the longest waiter (keyed-condvars).
    Owner(HashMap<SocketAddr, Condvar>),
}

struct RoleState {
    queues: HashMap<SocketAddr, VecDeque<Vec<u8>>>,
    /// With [`Wakes::Owner`]: the owners waiting while someone reads,
    /// longest first (always empty with [`Wakes::All`]).
    waiting: VecDeque<SocketAddr>,
    reading: bool,
    stop: bool,
}

impl RoleServer {
    /// `me`'s next datagram, or `None` once stopped. A thread that finds
    /// nothing in its own queue and nobody reading becomes the reader.
    fn next(&self, me: SocketAddr) -> Option<Vec<u8>> {
        let mut st = self.state.lock().unwrap();
        loop {
            if let Some(m) = st.queues.get_mut(&me).unwrap().pop_front() {
                return Some(m);
            }
            if st.stop {
                return None;
            }
            if st.reading {
                st = self.wait(st, me);
                continue;
            }
            st.reading = true;
            st.waiting.retain(|w| *w != me);
            drop(st);
            let got = self.read_until_own(me);
            st = self.state.lock().unwrap();
            st.reading = false;
            // Someone else may take the reading over; whoever comes first
            // takes it (this thread too, back from its echo).
            self.role_freed(st);
            if got.is_some() {
                return got;
            }
            st = self.state.lock().unwrap();
        }
    }

    /// As the reader: reads and stores others' datagrams (waking as
    /// `wakes` says) until `me`'s own arrives, or a time-out or an empty
    /// datagram finds the design stopped (`None`). Without `keep_reading`,
    /// returns `None` after the first datagram stored for someone else.
    fn read_until_own(&self, me: SocketAddr) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        loop {
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) if n > 0 => {
                    if from == me {
                        return Some(buf[..n].to_vec());
                    }
                    let mut st = self.state.lock().unwrap();
                    if let Some(q) = st.queues.get_mut(&from) {
                        q.push_back(buf[..n].to_vec());
                    }
                    self.stored(st, from);
                    if !self.keep_reading {
                        return None;
                    }
                }
                Ok(_) => {
                    if self.state.lock().unwrap().stop {
                        return None;
                    }
                }
                Err(e) if is_timeout(&e) => {
                    if self.state.lock().unwrap().stop {
                        return None;
                    }
                }
                Err(e) => panic!("{}: recv_from failed: {e}", self.name),
            }
        }
    }

    /// Waits while someone reads (bounded, in case of a lost wake-up).
    fn wait<'a>(
        &self,
        mut st: MutexGuard<'a, RoleState>,
        me: SocketAddr,
    ) -> MutexGuard<'a, RoleState> {
        let cv = match &self.wakes {
            Wakes::All(cv) => cv,
            Wakes::Owner(cvs) => {
                if !st.waiting.contains(&me) {
                    st.waiting.push_back(me);
                }
                &cvs[&me]
            }
        };
        cv.wait_timeout(st, SAFETY_READ_TIMEOUT).unwrap().0
    }

    /// After storing a datagram for `owner`: wakes as `wakes` says, after
    /// unlocking.
    fn stored(&self, mut st: MutexGuard<'_, RoleState>, owner: SocketAddr) {
        match &self.wakes {
            Wakes::All(cv) => {
                drop(st);
                cv.notify_all();
            }
            Wakes::Owner(cvs) => {
                let waits = st.waiting.iter().position(|w| *w == owner);
                if let Some(i) = waits {
                    st.waiting.remove(i);
                }
                drop(st);
                if waits.is_some() {
                    cvs[&owner].notify_one();
                }
            }
        }
    }

    /// After the reader gave the role up: wakes as `wakes` says, after
    /// unlocking.
    fn role_freed(&self, mut st: MutexGuard<'_, RoleState>) {
        match &self.wakes {
            Wakes::All(cv) => {
                drop(st);
                cv.notify_all();
            }
            Wakes::Owner(cvs) => {
                let next = st.waiting.pop_front();
                drop(st);
                if let Some(w) = next {
                    cvs[&w].notify_one();
                }
            }
        }
    }
}

fn broadcast(peers: &[SocketAddr]) -> Server {
    role_server("broadcast", peers, Wakes::All(Condvar::new()), true)
}

fn broadcast_plain(peers: &[SocketAddr]) -> Server {
    role_server("broadcast-plain", peers, Wakes::All(Condvar::new()), false)
}

fn keyed_condvars(peers: &[SocketAddr]) -> Server {
    let cvs = peers.iter().map(|&p| (p, Condvar::new())).collect();
    role_server("keyed-condvars", peers, Wakes::Owner(cvs), true)
}

fn role_server(
    name: &'static str,
    peers: &[SocketAddr],
    wakes: Wakes,
    keep_reading: bool,
) -> Server {
    let sock = loopback_socket(SAFETY_READ_TIMEOUT);
    let addr = sock.local_addr().unwrap();
    let shared = Arc::new(RoleServer {
        name,
        state: Mutex::new(RoleState {
            queues: peers.iter().map(|&p| (p, VecDeque::new())).collect(),
            waiting: VecDeque::new(),
            reading: false,
            stop: false,
        }),
        wakes,
        sock,
        keep_reading,
    });
    let mut b = ServerBuilder::new();
    for &peer in peers {
        let shared = Arc::clone(&shared);
        b.spawn(move |ready| {
            ready();
            let mut echoed = 0;
            while let Some(m) = shared.next(peer) {
                shared.sock.send_to(&m, peer).expect("echo");
                echoed += 1;
            }
            echoed
        });
    }
    b.finish(addr, move || {
        shared.state.lock().unwrap().stop = true;
        match &shared.wakes {
            Wakes::All(cv) => cv.notify_all(),
            Wakes::Owner(cvs) => cvs.values().for_each(Condvar::notify_all),
        }
    })
}

// ------------------------------------------------------------------- client

/// The client's sockets, one per peer.
struct Peers {
    socks: Vec<UdpSocket>,
    addrs: Vec<SocketAddr>,
}

impl Peers {
    fn bind(n: usize) -> Peers {
        let socks: Vec<UdpSocket> = (0..n).map(|_| loopback_socket(ECHO_TIMEOUT)).collect();
        let addrs = socks.iter().map(|s| s.local_addr().unwrap()).collect();
        Peers { socks, addrs }
    }

    fn connect(&self, server: SocketAddr) {
        for s in &self.socks {
            s.connect(server).unwrap();
        }
    }
}

/// A bounded sample of round trips, in nanoseconds: the latest
/// `cap` of them.
struct Sample {
    v: Vec<u64>,
    cap: usize,
    seen: usize,
}

impl Sample {
    fn new(cap: usize) -> Sample {
        Sample {
            v: Vec::with_capacity(cap.min(4096)),
            cap: cap.max(1),
            seen: 0,
        }
    }
    fn push(&mut self, ns: u64) {
        if self.v.len() < self.cap {
            self.v.push(ns);
        } else {
            self.v[self.seen % self.cap] = ns;
        }
        self.seen += 1;
    }
}

/// One datagram from peer `k` of `design`, echo checked; the round trip.
fn ping(design: &str, sock: &UdpSocket, k: usize, seq: u64) -> Duration {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&(k as u32).to_le_bytes());
    out[4..8].copy_from_slice(&MAGIC.to_le_bytes());
    out[8..].copy_from_slice(&seq.to_le_bytes());
    let start = Instant::now();
    sock.send(&out).expect("client send");
    let mut back = [0u8; 64];
    let n = match sock.recv(&mut back) {
        Ok(n) => n,
        Err(e) if is_timeout(&e) => {
            panic!("{design}: no echo of datagram {seq} of peer {k} within {ECHO_TIMEOUT:?}")
        }
        Err(e) => panic!("client recv: {e}"),
    };
    let rtt = start.elapsed();
    assert_eq!(
        &back[..n],
        &out[..],
        "{design}: peer {k} got an echo that is not its datagram {seq}"
    );
    rtt
}

/// What the client measured in the timed window.
struct ClientRun {
    datagrams: u64,
    wall: Duration,
    process_switches: Switches,
    rtts: Vec<u64>,
}

fn one_at_a_time(design: &str, peers: &Peers, max: u64, run_time: Duration) -> ClientRun {
    let n = peers.socks.len();
    let mut sample = Sample::new(SAMPLE_CAP);
    let switches = process_switches();
    let start = Instant::now();
    let deadline = start + run_time;
    let mut done = 0;
    while done < max {
        let rtt = ping(
            design,
            &peers.socks[done as usize % n],
            done as usize % n,
            done,
        );
        sample.push(rtt.as_nanos() as u64);
        done += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    ClientRun {
        datagrams: done,
        wall: start.elapsed(),
        process_switches: process_switches() - switches,
        rtts: sample.v,
    }
}

/// `busy` client threads ping-pong concurrently, one with each of the first
/// `busy` peers; the other peers' owners get no traffic.
fn all_at_once(
    design: &str,
    peers: &Peers,
    busy: usize,
    max: u64,
    run_time: Duration,
) -> ClientRun {
    let n = busy;
    let per_peer = max.div_ceil(n as u64);
    let go = Barrier::new(n + 1);
    let deadline_shared = Mutex::new(None::<Instant>);
    thread::scope(|s| {
        let threads: Vec<_> = peers.socks[..busy]
            .iter()
            .enumerate()
            .map(|(k, sock)| {
                let (go, deadline_shared) = (&go, &deadline_shared);
                s.spawn(move || {
                    let mut sample = Sample::new(SAMPLE_CAP / n);
                    go.wait();
                    let deadline = deadline_shared.lock().unwrap().expect("set before `go`");
                    let mut done = 0;
                    while done < per_peer {
                        let rtt = ping(design, sock, k, done);
                        sample.push(rtt.as_nanos() as u64);
                        done += 1;
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                    (done, sample.v)
                })
            })
            .collect();
        let switches = process_switches();
        let start = Instant::now();
        *deadline_shared.lock().unwrap() = Some(start + run_time);
        go.wait();
        let mut datagrams = 0;
        let mut rtts = Vec::new();
        for t in threads {
            let (done, v) = t.join().expect("a client thread panicked");
            datagrams += done;
            rtts.extend(v);
        }
        ClientRun {
            datagrams,
            wall: start.elapsed(),
            process_switches: process_switches() - switches,
            rtts,
        }
    })
}

// ------------------------------------------------------------------ one run

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    OneAtATime,
    AllAtOnce,
    /// All at once with the first [`TWO_BUSY`] peers only: the other
    /// owners' tickets wait for traffic that never comes (idle peers, the
    /// common case of a server with many).
    TwoBusy,
}

/// How many peers [`Workload::TwoBusy`] drives.
const TWO_BUSY: usize = 2;

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::OneAtATime => "one at a time",
            Workload::AllAtOnce => "all at once",
            Workload::TwoBusy => "two busy",
        }
    }

    /// The cell's name in `BENCH_CELL`: `one-8`, `all-8`, `two-8`.
    fn key(self, n: usize) -> String {
        let w = match self {
            Workload::OneAtATime => "one",
            Workload::AllAtOnce => "all",
            Workload::TwoBusy => "two",
        };
        format!("{w}-{n}")
    }
}

struct Design {
    name: &'static str,
    start: fn(&[SocketAddr]) -> Server,
}

const DESIGNS: [Design; 9] = [
    Design {
        name: "ours-blocking",
        start: ours_blocking,
    },
    Design {
        name: "ours-eager",
        start: ours_eager,
    },
    Design {
        name: "ours-recv",
        start: ours_recv,
    },
    Design {
        name: "ours-async",
        start: ours_async,
    },
    Design {
        name: "socket-per-thread",
        start: socket_per_thread,
    },
    Design {
        name: "reader-thread",
        start: reader_thread,
    },
    Design {
        name: "broadcast",
        start: broadcast,
    },
    Design {
        name: "broadcast-plain",
        start: broadcast_plain,
    },
    Design {
        name: "keyed-condvars",
        start: keyed_condvars,
    },
];

/// What one run of one design measured.
#[derive(Clone, Copy, Debug)]
struct RunStats {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    server_cs: f64,
    server_vcs: f64,
    process_cs: f64,
    server_cpu_us: f64,
    /// The host's steal share during the timed part of the run
    /// ([`benches::steal`]), where it can be read.
    steal: Option<f64>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn run_once(
    design: &Design,
    workload: Workload,
    n: usize,
    max: u64,
    run_time: Duration,
) -> RunStats {
    let peers = Peers::bind(n);
    let server = (design.start)(&peers.addrs);
    peers.connect(server.addr);
    // Warm-up, untimed: one datagram per peer (every owner has served once).
    for (k, s) in peers.socks.iter().enumerate() {
        ping(design.name, s, k, u64::MAX - k as u64);
    }
    let (got, steal) = steal::during(|| match workload {
        Workload::OneAtATime => one_at_a_time(design.name, &peers, max, run_time),
        Workload::AllAtOnce => all_at_once(design.name, &peers, n, max, run_time),
        Workload::TwoBusy => all_at_once(design.name, &peers, TWO_BUSY, max, run_time),
    });
    let server = server.shut_down(&peers);
    let sent = got.datagrams + n as u64;
    assert_eq!(
        server.echoed, sent,
        "{}: the server echoed {} datagrams, the client sent {sent}",
        design.name, server.echoed
    );
    let mut rtts = got.rtts;
    rtts.sort_unstable();
    RunStats {
        per_sec: got.datagrams as f64 / got.wall.as_secs_f64(),
        p50_us: percentile(&rtts, 0.50),
        p99_us: percentile(&rtts, 0.99),
        server_cs: server.switches.total() as f64 / server.echoed as f64,
        server_vcs: server.switches.voluntary as f64 / server.echoed as f64,
        process_cs: got.process_switches.total() as f64 / got.datagrams as f64,
        server_cpu_us: server.cpu.as_secs_f64() * 1e6 / server.echoed as f64,
        steal,
    }
}

// --------------------------------------------------------- rounds and table

/// The order of the cells, and of the designs within a cell, for one round of
/// one mode: a fresh random permutation each time (SplitMix64 behind a
/// Fisher-Yates shuffle; seed `BENCH_SEED`, default 1, so a run can be
/// repeated). Not a rotation: rotating a fixed list gives every design the
/// same predecessor in almost every round, and what ran just before moves a
/// loaded saturated run between two regimes (see "What decides a loaded
/// saturated run"), so a rotation can hand one design the other's regime
/// round after round. Shuffled, every design follows every other one, and
/// none in a fixed pattern.
struct Shuffle(u64);

impl Shuffle {
    /// Seeded from `BENCH_SEED` (default 1).
    fn from_env() -> Shuffle {
        Shuffle(benches::env_u64("BENCH_SEED").unwrap_or(1))
    }

    fn next(&mut self) -> u64 {
        benches::splitmix64(&mut self.0)
    }

    /// `0..n` in a random order.
    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }
}

const MODES: [&str; 2] = ["quiet", "loaded"];

fn main() {
    // 9 quiet + 9 loaded rounds x 7 cells x 8 designs x ~0.16 s, plus a
    // warm-up: about three minutes. Nine, not five: the loaded saturated
    // ratios swing from round to round (0.71-1.88 per round at N = 8 in one
    // run), and the median of five was a coin toss around 1.0.
    // Before the runs: a rebuild while this runs must not change it.
    let fingerprint = benches::pool::build_fingerprint();
    let mut settings = Settings::from_env(9, 150);
    let modes = if settings.smoke { 1 } else { 2 };
    if settings.smoke {
        settings.max_trips = 40;
    }
    let mut cells: Vec<(Workload, usize)> = [Workload::OneAtATime, Workload::AllAtOnce]
        .into_iter()
        .flat_map(|w| NS.map(|n| (w, n)))
        .chain([(Workload::TwoBusy, 8)])
        .collect();
    // While developing: `BENCH_CELL=all-8` (or `one-32,all-8,two-8`, ...) runs
    // those cells only and prints the rounds, no report.
    let only = std::env::var("BENCH_CELL").ok();
    if let Some(only) = &only {
        cells.retain(|&(w, n)| only.split(',').any(|o| o == w.key(n)));
        assert!(!cells.is_empty(), "BENCH_CELL={only}: no such cell");
    }
    // And `BENCH_DESIGN=ours-blocking` (or a comma-separated list) runs
    // those designs only (to profile one, or to compare a few).
    let designs: Vec<&Design> = match std::env::var("BENCH_DESIGN") {
        Ok(names) if only.is_some() => DESIGNS
            .iter()
            .filter(|d| names.split(',').any(|n| n == d.name))
            .collect(),
        _ => DESIGNS.iter().collect(),
    };
    assert!(!designs.is_empty(), "BENCH_DESIGN: no such design");
    let d = designs.len();
    let mode_only = match std::env::var("BENCH_MODE") {
        Ok(m) if only.is_some() => Some(
            MODES
                .iter()
                .position(|&name| name == m)
                .unwrap_or_else(|| panic!("BENCH_MODE={m}: quiet or loaded")),
        ),
        _ => None,
    };
    let runs_mode = |mode: usize| mode_only.is_none_or(|m| m == mode);
    let warm: Option<&Design> = match std::env::var("BENCH_WARM") {
        Ok(name) if only.is_some() => Some(
            DESIGNS
                .iter()
                .find(|x| x.name == name)
                .unwrap_or_else(|| panic!("BENCH_WARM={name}: no such design")),
        ),
        _ => None,
    };
    let run = |design: &Design, (w, n): (Workload, usize), run_time| {
        run_once(design, w, n, settings.max_trips, run_time)
    };

    if !settings.smoke {
        for mode in 0..modes {
            let _load = (mode == 1).then(Load::start);
            for &cell in &cells {
                for design in &designs {
                    run(design, cell, settings.run_time / 3);
                }
            }
        }
    }

    // results[mode][cell][design][round]
    let mut results = vec![vec![vec![Vec::<RunStats>::new(); d]; cells.len()]; modes];
    let started = Instant::now();
    let mut order = Shuffle::from_env();
    let seed = order.0;
    for round in 0..settings.rounds {
        for (mode, per_mode) in results.iter_mut().enumerate() {
            if !runs_mode(mode) {
                continue;
            }
            let _load = (mode == 1).then(Load::start);
            for c in order.permutation(cells.len()) {
                for i in order.permutation(d) {
                    if let Some(w) = warm {
                        run(w, (Workload::OneAtATime, 32), settings.run_time);
                    }
                    per_mode[c][i].push(run(designs[i], cells[c], settings.run_time));
                }
            }
        }
        let mut line = format!(
            "exit_left_udp: round {}/{} ({:.0?}), datagrams/s (server cs / datagram):",
            round + 1,
            settings.rounds,
            started.elapsed()
        );
        for (mode, per_mode) in results.iter().enumerate() {
            if !runs_mode(mode) {
                continue;
            }
            for (c, &(w, n)) in cells.iter().enumerate() {
                line += &format!("\n  {:6} {:13} N={n:2}:", MODES[mode], w.name());
                for (i, design) in designs.iter().enumerate() {
                    let r = per_mode[c][i].last().unwrap();
                    line += &format!(
                        " {} {:.0} ({:.2} cs, {:.1} µs, {:.2} v, {} st);",
                        design.name,
                        r.per_sec,
                        r.server_cs,
                        r.server_cpu_us,
                        r.server_vcs,
                        r.steal
                            .map_or("-".to_string(), |s| format!("{:.0}%", s * 100.0))
                    );
                }
            }
        }
        eprintln!("{line}");
    }

    if only.is_some() {
        return;
    }
    if settings.smoke {
        benches::pool::self_check();
        eprintln!(
            "exit_left_udp: smoke test passed ({} designs x {} cells, every datagram echoed; \
             the rounds pool checked)",
            d,
            cells.len()
        );
        return;
    }

    let mut md = report(&settings, seed, &cells, &results);
    md += &pooled(&settings, seed, fingerprint, &cells, &results);
    println!("{md}");
    std::fs::write(benches::report_fragment_path("exit_left_udp"), md).unwrap();
}

/// Saves this run's rounds (`benches::pool`) and returns the section that
/// pools them with the earlier runs of this build: saturated throughput
/// ours-blocking / every other design, per (mode, N); empty for the first
/// run of a build.
fn pooled(
    settings: &Settings,
    seed: u64,
    fingerprint: u64,
    cells: &[(Workload, usize)],
    results: &[Vec<Vec<Vec<RunStats>>>],
) -> String {
    use benches::pool::{Record, Run};
    let mut records = Vec::new();
    for (mode, per_mode) in results.iter().enumerate() {
        for (c, &(w, n)) in cells.iter().enumerate() {
            for (i, design) in DESIGNS.iter().enumerate() {
                for (round, r) in per_mode[c][i].iter().enumerate() {
                    records.push(Record {
                        mode: MODES[mode].into(),
                        cell: w.key(n),
                        design: design.name.into(),
                        round: round as u32,
                        per_sec: r.per_sec,
                    });
                }
            }
        }
    }
    let run = Run {
        seed,
        settings: format!(
            "{} rounds per mode, {} ms per run",
            settings.rounds,
            settings.run_time.as_millis()
        ),
        records,
    };
    let dir = benches::pool::rounds_dir();
    let runs = match benches::pool::save_and_load(&dir, "exit_left_udp", fingerprint, &run) {
        Ok((runs, skipped)) => {
            for path in skipped {
                eprintln!(
                    "exit_left_udp: {}: not a rounds file, skipped",
                    path.display()
                );
            }
            runs
        }
        Err(e) => {
            eprintln!("exit_left_udp: rounds not pooled ({}: {e})", dir.display());
            return String::new();
        }
    };
    let all = Workload::AllAtOnce;
    let keys: Vec<(&str, String)> = MODES
        .iter()
        .flat_map(|&m| NS.map(|n| (m, all.key(n))))
        .collect();
    let columns: Vec<(&str, &str)> = keys.iter().map(|(m, c)| (*m, c.as_str())).collect();
    let names: Vec<&str> = DESIGNS.iter().map(|d| d.name).collect();
    benches::pool::pooled_markdown(
        &runs,
        "all at once (saturation), throughput (columns `all-N`: N owners)",
        DESIGNS[0].name,
        &names,
        &columns,
        "broadcast",
    )
}

/// `results[mode][cell][design][round]` (rounds shuffled with `seed`) as
/// Markdown: the full table per mode, then the key figures.
fn report(
    settings: &Settings,
    seed: u64,
    cells: &[(Workload, usize)],
    results: &[Vec<Vec<Vec<RunStats>>>],
) -> String {
    let mut md = String::from("## exit-left: N owners behind one UDP socket (loopback)\n\n");
    md += &format!(
        "{r} quiet and {r} loaded rounds, alternating; in every round each design runs once per \
         (workload, N), cells and designs in a fresh random order every round (seed {seed}); {ms} ms per run. Loaded: {busy} busy threads (one per core, \
         pinned). *one at a time*: one client thread, one datagram in flight, peers in turn; *all \
         at once*: N client threads ping-pong concurrently; *two busy*: the same with 2 of the \
         N peers, the other owners idle. Round trips are the client's, per \
         datagram. **server cs**: context switches counted by the kernel \
         (`getrusage(RUSAGE_THREAD)`, voluntary + involuntary; voluntary alone in brackets) of \
         the design's own threads, per datagram echoed; **process cs**: `getrusage(RUSAGE_SELF)` \
         over the timed window per datagram (client threads too, and in loaded rounds the busy \
         threads). Ratios are medians of per-round ratios **ours-blocking / this design**: \
         throughput above 1.00 = ours-blocking faster; server cs below 1.00 = ours-blocking \
         switches less. Every other figure is a median over rounds. The module documentation of \
         `benches/benches/exit_left_udp.rs` describes the designs.\n\n",
        r = settings.rounds,
        ms = settings.run_time.as_millis(),
        busy = busy_threads(),
    );
    let cs_ratio = |ours: &[RunStats], this: &[RunStats]| {
        median(
            ours.iter()
                .zip(this)
                .map(|(o, t)| o.server_cs / t.server_cs.max(1e-9)),
        )
    };
    let thr_ratios = |ours: &[RunStats], this: &[RunStats]| -> Vec<f64> {
        ours.iter()
            .zip(this)
            .map(|(o, t)| o.per_sec / t.per_sec)
            .collect()
    };
    for (mode, per_mode) in results.iter().enumerate() {
        md += &format!(
            "### {}\n\n| workload | N | design | datagrams/s | throughput ours / this (>1: ours \
             faster) | (min - max) | p50 µs | p99 µs | server cs / dgram (voluntary) | process \
             cs / dgram | server cs ours / this (<1: ours fewer) | server CPU µs / dgram |\n\
             |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            MODES[mode]
        );
        for (c, &(w, n)) in cells.iter().enumerate() {
            let ours = &per_mode[c][0];
            for (i, design) in DESIGNS.iter().enumerate() {
                let this = &per_mode[c][i];
                let thr = thr_ratios(ours, this);
                let lo = thr.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = thr.iter().copied().fold(0.0, f64::max);
                md += &format!(
                    "| {} | {n} | {} | {:.0} | {:.2} | ({lo:.2} - {hi:.2}) | {:.1} | {:.1} \
                     | {:.2} ({:.2}) | {:.2} | {:.2} | {:.1} |\n",
                    w.name(),
                    design.name,
                    median(this.iter().map(|r| r.per_sec)),
                    median(thr.iter().copied()),
                    median(this.iter().map(|r| r.p50_us)),
                    median(this.iter().map(|r| r.p99_us)),
                    median(this.iter().map(|r| r.server_cs)),
                    median(this.iter().map(|r| r.server_vcs)),
                    median(this.iter().map(|r| r.process_cs)),
                    cs_ratio(ours, this),
                    median(this.iter().map(|r| r.server_cpu_us)),
                );
            }
        }
        md.push('\n');
    }

    // Key figures: one column per (mode, N).
    let cols: Vec<(usize, usize)> = (0..results.len())
        .flat_map(|m| NS.map(|n| (m, n)))
        .collect();
    let header = |first: &str| {
        let mut h = format!("| {first} |");
        for &(m, n) in &cols {
            h += &format!(" {} N={n} |", MODES[m]);
        }
        h += "\n|---|";
        h += &"---:|".repeat(cols.len());
        h + "\n"
    };
    let cell_of = |w: Workload, n: usize| cells.iter().position(|&c| c == (w, n)).unwrap();
    md += "### Key figures\n\nOne at a time, server context switches per datagram, total \
           (voluntary):\n\n";
    md += &header("design");
    for (i, design) in DESIGNS.iter().enumerate() {
        md += &format!("| {} |", design.name);
        for &(m, n) in &cols {
            let runs = &results[m][cell_of(Workload::OneAtATime, n)][i];
            md += &format!(
                " {:.2} ({:.2}) |",
                median(runs.iter().map(|r| r.server_cs)),
                median(runs.iter().map(|r| r.server_vcs))
            );
        }
        md.push('\n');
    }
    md += "\nAll at once (saturation), throughput: median of per-round ratios ours-blocking / \
           this (above 1.00: ours-blocking faster):\n\n";
    md += &header("ours-blocking / ...");
    for (i, design) in DESIGNS.iter().enumerate().skip(1) {
        md += &format!("| {} |", design.name);
        for &(m, n) in &cols {
            let per_cell = &results[m][cell_of(Workload::AllAtOnce, n)];
            md += &format!(" {:.2} |", median(thr_ratios(&per_cell[0], &per_cell[i])));
        }
        md.push('\n');
    }
    if let Some(c) = cells.iter().position(|&(w, _)| w == Workload::TwoBusy) {
        let n = cells[c].1;
        md += &format!(
            "\nTwo busy (N = {n} owners, {TWO_BUSY} of them driven all at once, the other \
             tickets idle): datagrams/s, and the median of per-round ratios ours-blocking / this \
             (above 1.00: ours-blocking faster):\n\n| design |"
        );
        for mode in MODES.iter().take(results.len()) {
            md += &format!(" {mode} datagrams/s | {mode} ours / this |");
        }
        md += "\n|---|";
        md += &"---:|---:|".repeat(results.len());
        md.push('\n');
        for (i, design) in DESIGNS.iter().enumerate() {
            md += &format!("| {} |", design.name);
            for per_mode in results {
                let per_cell = &per_mode[c];
                md += &format!(
                    " {:.0} | {:.2} |",
                    median(per_cell[i].iter().map(|r| r.per_sec)),
                    median(thr_ratios(&per_cell[0], &per_cell[i]))
                );
            }
            md.push('\n');
        }
    }
    md += "\nAll at once (saturation), CPU time of the design's own threads per datagram, µs \
           (`CLOCK_THREAD_CPUTIME_ID` of every server thread over its life, over the datagrams \
           it echoed):\n\n";
    md += &header("design");
    for (i, design) in DESIGNS.iter().enumerate() {
        md += &format!("| {} |", design.name);
        for &(m, n) in &cols {
            let runs = &results[m][cell_of(Workload::AllAtOnce, n)][i];
            md += &format!(" {:.1} |", median(runs.iter().map(|r| r.server_cpu_us)));
        }
        md.push('\n');
    }
    md += "\nHost steal share during the timed runs (`/proc/stat`, all cells and designs; see \
           the module documentation, \"Steal\"):";
    for (mode, per_mode) in results.iter().enumerate() {
        let shares = per_mode.iter().flatten().flatten().filter_map(|r| r.steal);
        md += &format!(" {} {};", MODES[mode], steal::summary(shares));
    }
    md += "\n\n";
    md
}
