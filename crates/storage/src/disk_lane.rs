//! The local disk's lane: who may put requests on the disk, and when.
//!
//! Direct reads of local objects share the disk with the WAL, whose commit
//! latency is every acks=all producer's latency. Measured on our machines (a
//! virtual disk): two concurrent 8 MiB direct reads pushed a 64 KiB
//! write+fdatasync from 0.24 ms to 18 ms (p50); with catch-up reading in
//! 256 KiB chunks, the WAL's group commits kept a p50 of 0.2 ms but their
//! p99 rose from 0.4 to 1.6-3.2 ms (strace on the WAL thread: pwrite and
//! fdatasync p99 0.29 and 0.19 ms before, 2.35 and 2.09 ms during), and the
//! idle I/O class for the reading threads did not change that (the device,
//! not the kernel's scheduler, queues the requests). One
//! stream of direct reads gets 0.94-0.99 GB/s whatever the request size,
//! two streams 1.24 GB/s together (`dd iflag=direct`); a 4 KiB
//! write+fdatasync took 0.21 ms (p50) on an idle disk, 0.52 ms beside one
//! stream of 256 KiB reads and 1.01 ms beside two. Two turns made catch-up
//! ~8% faster in an A/B of three benchmark runs each, within the noise of
//! those runs, and gave the tail nothing; with 512 KiB chunks, two turns
//! caught up ~16% faster (median round 1066 against 918 MiB/s, six rounds
//! each) and doubled the WAL's commit p99 (1.6 against 0.8 ms): one turn it
//! is.
//!
//! Object writes (uploads, compaction's output) do the same to the WAL: in
//! a probe, an 8 KiB write+fdatasync every 0.5 ms beside a writer of 64 MiB
//! objects in 1 MiB `O_DIRECT` writes had a p99 of 2.7 ms (0.22 ms alone);
//! with the writer taking turns in 512 KiB chunks, 1.2 ms (writer 576
//! against 610 MiB/s). Inside the broker, 13 of the 31 group commits over
//! 1 ms in a 10 s window of the catch-up benchmark ran while an object was
//! being written, which it was 2% of the time. (The benchmark's tail p99
//! did not move measurably either way: its live traffic uploads little.)
//!
//! So every chunk read or written takes a turn here: at most
//! [`DEPTH`] at a time, chunks a consumer or an upload is waiting for
//! before background ones (read-ahead, compaction), and none while the WAL
//! commits: a commit then waits only for the chunks already at the disk.
//! One lane per process: by default the embedded broker keeps its WAL and
//! its local objects under one data directory.

use parking_lot::{Condvar, Mutex};
use std::sync::LazyLock;

/// Chunks (read or written) at the disk at a time (see the module comment).
pub const DEPTH: usize = 1;

tokio::task_local! {
    /// Set while background work runs (read-ahead, compaction): its chunks
    /// yield the disk to those a consumer or an upload is waiting for.
    static BACKGROUND: ();
}

/// Runs `work` in the background class: its chunks wait while an urgent
/// chunk wants a turn.
pub(crate) async fn in_background<F: std::future::Future>(work: F) -> F::Output {
    BACKGROUND.scope((), work).await
}

/// Whether the calling task's disk work is urgent (a consumer or a producer
/// waits for it).
pub(crate) fn is_urgent() -> bool {
    BACKGROUND.try_with(|_| ()).is_err()
}

static LANE: LazyLock<Lane> = LazyLock::new(|| Lane::new(DEPTH));

/// Blocks until a chunk read or write may go to the disk; the turn ends
/// when the returned guard drops.
pub(crate) fn turn(urgent: bool) -> Turn<'static> {
    LANE.turn(urgent)
}

/// Holds new turns back until the returned guard drops (the WAL holds one
/// for each group commit). Does not wait for chunks already at the disk.
pub(crate) fn pause() -> Pause<'static> {
    LANE.pause()
}

#[derive(Debug)]
struct Lane {
    state: Mutex<LaneState>,
    freed: Condvar,
    depth: usize,
}

#[derive(Debug, Default)]
struct LaneState {
    at_disk: usize,
    urgent_waiting: usize,
    paused: usize,
}

/// One admitted chunk read or write.
pub(crate) struct Turn<'a>(&'a Lane);

/// A pause of new turns.
pub(crate) struct Pause<'a>(&'a Lane);

impl Lane {
    fn new(depth: usize) -> Self {
        Self {
            state: Mutex::new(LaneState::default()),
            freed: Condvar::new(),
            depth: depth.max(1),
        }
    }

    fn turn(&self, urgent: bool) -> Turn<'_> {
        let mut st = self.state.lock();
        if urgent {
            st.urgent_waiting += 1;
            while st.at_disk >= self.depth || st.paused > 0 {
                self.freed.wait(&mut st);
            }
            st.urgent_waiting -= 1;
        } else {
            while st.at_disk >= self.depth || st.paused > 0 || st.urgent_waiting > 0 {
                self.freed.wait(&mut st);
            }
        }
        st.at_disk += 1;
        Turn(self)
    }

    fn pause(&self) -> Pause<'_> {
        self.state.lock().paused += 1;
        Pause(self)
    }

    /// Wakes every waiter: a woken background read may have to keep waiting
    /// for an urgent read, which must then be the one to get the turn.
    fn release(&self, f: impl FnOnce(&mut LaneState)) {
        f(&mut self.state.lock());
        self.freed.notify_all();
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.release(|st| st.at_disk -= 1);
    }
}

impl Drop for Pause<'_> {
    fn drop(&mut self) {
        self.0.release(|st| st.paused -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn bounds_reads_and_pauses_them_for_the_wal() {
        let lane = Arc::new(Lane::new(2));
        let a = lane.turn(true);
        let b = lane.turn(false);
        let admitted = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (lane, admitted) = (lane.clone(), admitted.clone());
            std::thread::spawn(move || {
                let _t = lane.turn(false);
                admitted.fetch_add(1, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            admitted.load(Ordering::SeqCst),
            0,
            "two reads already at the disk"
        );
        let pause = lane.pause();
        drop((a, b));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            admitted.load(Ordering::SeqCst),
            0,
            "paused while the WAL commits"
        );
        drop(pause);
        waiter.join().unwrap();
        assert_eq!(admitted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn urgent_reads_go_before_background_ones() {
        let lane = Arc::new(Lane::new(1));
        let first = lane.turn(false);
        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn = |urgent: bool, name: &'static str| {
            let (lane, order) = (lane.clone(), order.clone());
            std::thread::spawn(move || {
                let _t = lane.turn(urgent);
                order.lock().push(name);
                std::thread::sleep(Duration::from_millis(10));
            })
        };
        let ahead = spawn(false, "background");
        std::thread::sleep(Duration::from_millis(30));
        let urgent = spawn(true, "urgent");
        std::thread::sleep(Duration::from_millis(30));
        drop(first);
        ahead.join().unwrap();
        urgent.join().unwrap();
        assert_eq!(*order.lock(), vec!["urgent", "background"]);
    }
}
