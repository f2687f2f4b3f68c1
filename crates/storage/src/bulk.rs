//! The bulk runtime: catch-up and compaction reads of objects, and the
//! socket writes of large catch-up fetch responses, run on a small second
//! runtime, so the main runtime's workers stay free for produce and tail
//! fetches (a multi-MiB `writev` holds its thread for about a millisecond).
//!
//! The bulk threads run in the `SCHED_IDLE` CPU class: they get a CPU
//! only when no normal thread wants it, and a waking produce or tail-fetch
//! thread takes the CPU from them at once (in user space; the socket writes
//! are cut into bounded calls for the kernel side, see the broker's
//! `server.rs`). Catch-up then uses whatever CPU the live traffic leaves.
//! Interleaved bench runs on two shared cores (see BENCHMARKS.md) put the
//! tail's p99 during a catch-up at 6-10 ms with this and the bounded
//! writes, against 13-26 ms without, for a catch-up 5-15% slower. (The
//! second runtime alone, at the normal priority, moved the tail by less
//! than the noise; nice 10 slowed the first second's reads and did not
//! help the tail measurably.) The cost: under a CPU load that never lets
//! up, a bulk thread runs rarely, so a lock it holds (the block cache's,
//! the read-buffer pool's; each held for microseconds) can keep a normal
//! thread waiting, and compaction falls behind; both are background work,
//! meant to give way.
//!
//! Their disk requests are in the idle I/O class, so schedulers that honour
//! I/O priorities (mq-deadline, BFQ) serve the WAL first. (On the virtual
//! disk we measure on, the device itself queues the requests and this made
//! no measurable difference; `disk_lane` is what bounds the reads there.)
//!
//! Without an installed runtime (unit tests, tools) the work runs on the
//! current runtime.

use std::sync::OnceLock;
use tokio::runtime::Handle;

static BULK: OnceLock<Handle> = OnceLock::new();

/// Makes `handle` the runtime for bulk work (once; later calls are ignored
/// and return false).
pub fn install(handle: Handle) -> bool {
    BULK.set(handle).is_ok()
}

/// The runtime for bulk work: the installed one, else the current one.
pub fn handle() -> Handle {
    BULK.get().cloned().unwrap_or_else(Handle::current)
}

/// `ioprio_set`/`ioprio_get` arguments (linux/ioprio.h): "who" is one
/// thread; the class sits in the value's top bits.
const IOPRIO_WHO_PROCESS: libc::c_long = 1;
const IOPRIO_CLASS_IDLE: libc::c_long = 3;
const IOPRIO_CLASS_SHIFT: u32 = 13;

/// Puts the calling thread in the `SCHED_IDLE` CPU class and its disk
/// requests in the idle I/O class. Failure only costs the priority, so it
/// is logged, not returned.
pub fn lower_thread_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` outlives the call; 0 names the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not put a bulk thread in the idle CPU class"
        );
    }
    // SAFETY: gettid and ioprio_set take and return plain integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            libc::gettid() as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not lower a bulk thread's I/O priority"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_class(tid: libc::c_long) -> libc::c_long {
        // SAFETY: plain integer syscall.
        let v = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid) };
        v >> IOPRIO_CLASS_SHIFT
    }

    #[test]
    fn lowers_only_the_calling_threads_priorities() {
        // SAFETY: gettid and sched_getscheduler(0) have no preconditions.
        let me = unsafe { libc::gettid() } as libc::c_long;
        let (io_before, cpu_before) = (io_class(me), unsafe { libc::sched_getscheduler(0) });
        let (io, cpu) = std::thread::spawn(|| {
            lower_thread_priority();
            // SAFETY: as above.
            unsafe {
                (
                    io_class(libc::gettid() as libc::c_long),
                    libc::sched_getscheduler(0),
                )
            }
        })
        .join()
        .unwrap();
        assert_eq!(io, IOPRIO_CLASS_IDLE);
        assert_eq!(cpu, libc::SCHED_IDLE);
        assert_eq!(
            io_class(me),
            io_before,
            "other threads keep their I/O class"
        );
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::sched_getscheduler(0) },
            cpu_before,
            "and their CPU class"
        );
    }
}
