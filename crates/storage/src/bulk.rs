//! The bulk runtime: catch-up reads and the socket writes of large
//! (catch-up) fetch responses run on a small second runtime, so the main
//! runtime's workers stay free for produce and tail fetches (a multi-MiB
//! `writev` holds its thread for about a millisecond). In our benchmark
//! runs on two shared cores the tail's p99 moved by less than the noise
//! between runs either way; the split is kept because it bounds what
//! catch-up work can take from the main workers at all.
//!
//! The bulk threads' disk requests are in the idle I/O class, so schedulers
//! that honour I/O priorities (mq-deadline, BFQ) serve the WAL first. (On
//! the virtual disk we measure on, the device itself queues the requests
//! and this made no measurable difference; `disk_lane` is what bounds the
//! reads there.) A lower CPU priority (nice 10) for these threads was tried
//! too: it halved the disk read rate in a catch-up's first second, with no
//! measurable gain for the tail, so they run at the normal one.
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

/// Puts the calling thread's disk requests in the idle I/O class. Failure
/// only costs the priority, so it is logged, not returned.
pub fn lower_thread_io_priority() {
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
    fn lowers_only_the_calling_threads_io_priority() {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() } as libc::c_long;
        let before = io_class(me);
        let child = std::thread::spawn(|| {
            lower_thread_io_priority();
            io_class(unsafe { libc::gettid() } as libc::c_long)
        })
        .join()
        .unwrap();
        assert_eq!(child, IOPRIO_CLASS_IDLE);
        assert_eq!(io_class(me), before, "other threads keep their class");
    }
}
