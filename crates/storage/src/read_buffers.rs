//! Reusable aligned buffers for direct (`O_DIRECT`) object reads.
//!
//! A catch-up reader reads hundreds of megabytes a second into fresh
//! buffers; each fresh buffer costs a page fault and a kernel page zeroing
//! per 4 KiB (a third of the broker's CPU during a catch-up, measured with
//! perf), and zeroing it ourselves costs a memset. A read here borrows a
//! buffer of its size class from a small pool and hands it out as `Bytes`
//! that give the buffer back when the last slice of it is dropped.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

/// Alignment (and size granularity) of direct I/O.
pub const BLOCK: usize = 4096;

/// Smallest size class.
const MIN_CLASS: usize = 64 << 10;

/// Idle buffers by size class, and the bytes they hold.
type Idle = (BTreeMap<usize, Vec<Vec<u8>>>, usize);

/// Size classes: steps of 1/8 of the next power of two, so at most a
/// quarter is wasted, and read-ahead spans of 7-8 MiB of rows all share the
/// 8 MiB class (finer classes left buffers idle in one class while another
/// class allocated fresh ones).
fn size_class(len: usize) -> usize {
    let len = len.max(MIN_CLASS);
    let step = len.next_power_of_two() / 8;
    len.div_ceil(step) * step
}

/// A pool of idle buffers per size class (plus one block of slack for
/// alignment), holding at most `limit` bytes.
#[derive(Debug)]
pub struct ReadBuffers {
    idle: Mutex<Idle>,
    limit: usize,
}

/// A buffer on loan: `data()` is the aligned window of `len` bytes in it.
pub struct Loan {
    buf: Vec<u8>,
    start: usize,
    pool: Arc<ReadBuffers>,
}

impl ReadBuffers {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new((BTreeMap::new(), 0)),
            limit,
        })
    }

    /// A buffer with an aligned window of at least `len` bytes (its old
    /// contents, or zeros when new).
    pub fn take(self: &Arc<Self>, len: usize) -> Loan {
        let class = size_class(len);
        let reused = {
            let mut idle = self.idle.lock();
            // The smallest idle buffer of this class or up to twice its
            // size: exact classes alone left the pool full of odd sizes
            // (spans cut short at a window's end) while every read of the
            // common class allocated afresh.
            let fit = idle
                .0
                .range_mut(class..=class * 2)
                .find_map(|(_, bufs)| bufs.pop());
            if let Some(b) = &fit {
                idle.1 -= b.len();
            }
            fit
        };
        let outcome = if reused.is_some() { "reused" } else { "fresh" };
        let buf = reused.unwrap_or_else(|| fresh_buffer(class + BLOCK));
        let m = sluice_observe::metrics();
        m.read_buffers.with_label_values(&[outcome]).inc();
        m.read_buffer_bytes
            .with_label_values(&[outcome])
            .inc_by(buf.len() as u64);
        let start = buf.as_ptr().align_offset(BLOCK);
        Loan {
            buf,
            start,
            pool: self.clone(),
        }
    }

    fn give_back(&self, buf: Vec<u8>) {
        let class = buf.len() - BLOCK;
        let mut idle = self.idle.lock();
        // Over the limit, smaller idle buffers make room for a larger one:
        // a large buffer also serves smaller reads.
        while idle.1 + buf.len() > self.limit {
            let (map, bytes) = &mut *idle;
            let Some(mut smallest) = map.first_entry() else {
                break;
            };
            if *smallest.key() >= class {
                break;
            }
            if let Some(dropped) = smallest.get_mut().pop() {
                *bytes -= dropped.len();
            }
            if smallest.get().is_empty() {
                smallest.remove();
            }
        }
        if idle.1 + buf.len() <= self.limit {
            idle.1 += buf.len();
            idle.0.entry(class).or_default().push(buf);
        }
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.idle.lock().1
    }
}

/// A new zeroed buffer with every page already faulted in. The allocator
/// hands out untouched memory for large zeroed buffers, so otherwise the
/// kernel would fault and zero its pages inside the first read into it,
/// while that read holds one of the disk's read turns.
fn fresh_buffer(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    for i in (0..len).step_by(BLOCK) {
        // SAFETY: `i` is within `buf`; a volatile write so the store of a
        // zero into zeroed memory is not optimised away.
        unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(i), 0) };
    }
    buf
}

impl Loan {
    /// The aligned window (class size bytes) to read into.
    pub fn window(&mut self) -> &mut [u8] {
        let end = self.buf.len() - BLOCK + self.start;
        &mut self.buf[self.start..end]
    }

    /// `range` of the window as `Bytes`; the buffer returns to the pool
    /// when the last slice of it is dropped.
    pub fn into_bytes(self, range: Range<usize>) -> Bytes {
        Bytes::from_owner(self).slice(range)
    }
}

impl AsRef<[u8]> for Loan {
    fn as_ref(&self) -> &[u8] {
        let end = self.buf.len() - BLOCK + self.start;
        &self.buf[self.start..end]
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.len() > BLOCK {
            self.pool.give_back(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_reused_and_bounded() {
        let pool = ReadBuffers::new(3 << 20);
        let mut a = pool.take(1 << 20);
        assert_eq!(a.window().as_ptr() as usize % BLOCK, 0);
        assert_eq!(a.window().len(), 1 << 20);
        assert_eq!(size_class((8 << 20) - 3 * BLOCK), 8 << 20);
        assert_eq!(size_class((7 << 20) + 300 * 1024), 8 << 20);
        assert_eq!(size_class((8 << 20) + BLOCK), 10 << 20);
        assert_eq!(size_class(1), MIN_CLASS);
        a.window()[..3].copy_from_slice(b"abc");
        let ptr = a.window().as_ptr();
        let bytes = a.into_bytes(1..3);
        assert_eq!(&bytes[..], b"bc");
        let half = bytes.slice(1..);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds the buffer");
        drop(half);
        assert_eq!(pool.idle_bytes(), (1 << 20) + BLOCK);
        let mut b = pool.take(1000 << 10);
        assert_eq!(b.window().as_ptr(), ptr, "the same class reuses the buffer");
        assert_eq!(pool.idle_bytes(), 0);
        // Past the limit, returned buffers are freed instead of kept.
        let loans: Vec<_> = (0..4).map(|_| pool.take(1 << 20)).collect();
        drop(loans);
        drop(b);
        assert!(pool.idle_bytes() <= 3 << 20);
    }

    #[test]
    fn larger_buffers_serve_smaller_reads_and_push_out_small_idle_ones() {
        let pool = ReadBuffers::new((8 << 20) + (2 << 20) + 2 * BLOCK);
        // Two small idle buffers fill part of the pool.
        drop((pool.take(1 << 20), pool.take(1 << 20)));
        assert_eq!(pool.idle_bytes(), 2 * ((1 << 20) + BLOCK));
        // An 8 MiB buffer coming back pushes one out rather than being freed.
        let big = pool.take(8 << 20);
        let big_ptr = big.buf.as_ptr();
        drop(big);
        assert_eq!(pool.idle_bytes(), (8 << 20) + (1 << 20) + 2 * BLOCK);
        // A 5 MiB read (class 5 MiB) takes the 8 MiB buffer: within 2x.
        let mid = pool.take(5 << 20);
        assert_eq!(mid.buf.as_ptr(), big_ptr);
        drop(mid);
        // A 96 KiB read does not tie up the 8 MiB buffer: more than 2x.
        let small = pool.take(96 << 10);
        assert_ne!(small.buf.as_ptr(), big_ptr);
    }
}
