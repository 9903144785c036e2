//! A BPF ring-buffer reader that tells the kernel its position once per
//! batch instead of once per record.
//!
//! Why not aya's `RingBuf`: it publishes the consumer position after every
//! record. The kernel reads that position on every reserve, so with the
//! producer on one CPU and the reader on another the cache line holding it
//! moves between them for every event — a cost paid inside the traced
//! syscall. Draining a batch and publishing once (and every
//! `PUBLISH_EVERY_DIV`th of the ring during long drains, so a backlog
//! frees space as it goes) keeps that line still.
//!
//! Layout (kernel/bpf/ringbuf.c): page 0 is the consumer position (mapped
//! read-write), page 1 the producer position, then the data area mapped
//! twice in a row so a record that wraps is contiguous. Each record starts
//! with an 8-byte header whose first `u32` is its length plus the busy and
//! discard bits; records are 8-byte aligned.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use aya::maps::MapData;

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HDR: usize = 8;
/// During one drain, publish the position after each ring/`PUBLISH_EVERY_DIV`
/// bytes consumed.
const PUBLISH_EVERY_DIV: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("ring buffer size {0} is not a power of two multiple of the page size")]
    Size(usize),
    #[error("mapping the ring buffer ({what}): {source}")]
    Mmap {
        what: &'static str,
        source: std::io::Error,
    },
}

/// One `mmap`ed region, unmapped on drop.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn map(
        fd: RawFd,
        len: usize,
        prot: i32,
        offset: usize,
        what: &'static str,
    ) -> Result<Region, RingError> {
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks
        // offset, length and protection for ring-buffer maps and fails the
        // call otherwise. No Rust reference aliases the new region.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(RingError::Mmap {
                what,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Region {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing
        // borrows the region past the owner's life.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The reader. Owns the map (its fd is what `AsyncFd` waits on).
pub struct BatchRing {
    map: MapData,
    consumer: Region,
    producer: Region,
    page: usize,
    size: usize,
    /// Our position; published to the kernel by [`BatchRing::publish`].
    pos: usize,
    published: usize,
}

// SAFETY: the regions are plain shared memory owned by this value; the
// kernel is the only other party and all shared words are accessed
// atomically.
unsafe impl Send for BatchRing {}

impl BatchRing {
    /// Map the ring buffer `map` of `size` data bytes.
    pub fn new(map: MapData, size: usize) -> Result<BatchRing, RingError> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        if !size.is_power_of_two() || size < page {
            return Err(RingError::Size(size));
        }
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Region::map(
            fd,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            0,
            "consumer page",
        )?;
        let producer = Region::map(
            fd,
            page + 2 * size,
            libc::PROT_READ,
            page,
            "producer and data",
        )?;
        let mut ring = BatchRing {
            map,
            consumer,
            producer,
            page,
            size,
            pos: 0,
            published: 0,
        };
        ring.pos = ring.consumer_pos().load(Ordering::Acquire);
        ring.published = ring.pos;
        Ok(ring)
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: page 0 starts with the kernel's `unsigned long
        // consumer_pos`, page-aligned and valid while `self.consumer` lives.
        unsafe { &*self.consumer.ptr.cast::<AtomicUsize>() }
    }

    fn producer_pos(&self) -> &AtomicUsize {
        // SAFETY: as above, for the producer page's `producer_pos`.
        unsafe { &*self.producer.ptr.cast::<AtomicUsize>() }
    }

    /// Tell the kernel everything before our position may be reused.
    fn publish(&mut self) {
        if self.published != self.pos {
            self.consumer_pos().store(self.pos, Ordering::Release);
            self.published = self.pos;
        }
    }

    /// How full the ring is (0 to 1): bytes written by the kernel and not
    /// yet read, over the ring's size.
    pub fn fill_ratio(&self) -> f64 {
        let prod = self.producer_pos().load(Ordering::Acquire);
        prod.wrapping_sub(self.pos).min(self.size) as f64 / self.size as f64
    }

    /// Hand committed records to `f`, in order, at most `budget` of them,
    /// then publish the position. Stops at a record still being written (the
    /// next drain gets it), or after the record `f` failed on (which counts
    /// as consumed). Returns the number of records handed over: `budget`
    /// means more may be waiting (the caller yields to its timers first).
    pub fn drain<E>(
        &mut self,
        budget: usize,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mask = self.size - 1;
        let every = (self.size / PUBLISH_EVERY_DIV).max(HDR);
        let mut n = 0;
        'outer: loop {
            let prod = self.producer_pos().load(Ordering::Acquire);
            if prod == self.pos {
                break;
            }
            while self.pos != prod {
                if n >= budget {
                    break 'outer;
                }
                let off = self.pos & mask;
                // SAFETY: `off < size`, so the header lies in the first copy
                // of the data area (which starts one page into the region);
                // it is 8-byte aligned because records are.
                let hdr = unsafe { &*self.producer.ptr.add(self.page + off).cast::<AtomicU32>() };
                // Pairs with the kernel's ordered commit of the header.
                let h = hdr.load(Ordering::Acquire);
                if h & BUSY != 0 {
                    break 'outer;
                }
                let len = (h & !(BUSY | DISCARD)) as usize;
                if len > self.size - HDR {
                    // Cannot happen with a sane kernel; never read past the map.
                    log::error!(
                        "ring buffer record of {len} bytes in a {} byte ring",
                        self.size
                    );
                    self.pos = prod;
                    break 'outer;
                }
                if h & DISCARD == 0 {
                    // SAFETY: the record (header + len <= size bytes from
                    // off < size) lies within the doubled data area, which
                    // the kernel keeps unchanged until we publish past it.
                    let data = unsafe {
                        std::slice::from_raw_parts(
                            self.producer.ptr.add(self.page + off + HDR),
                            len,
                        )
                    };
                    let r = f(data);
                    n += 1;
                    if let Err(e) = r {
                        self.pos = self.pos.wrapping_add((len + HDR).next_multiple_of(8));
                        self.publish();
                        return Err(e);
                    }
                }
                self.pos = self.pos.wrapping_add((len + HDR).next_multiple_of(8));
                if self.pos.wrapping_sub(self.published) >= every {
                    self.publish();
                }
            }
        }
        self.publish();
        Ok(n)
    }
}

impl AsRawFd for BatchRing {
    fn as_raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }
}
