//! Cache hints for the evaluation hot path (no effect on semantics).

use crate::event::Event;

/// Hint the CPU to load the cache line at `p` (no effect on semantics).
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, even for dangling
    // or null addresses, and does not read into any Rust-visible value. SSE
    // is part of the x86_64 baseline, so the instruction always exists.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetch the heap data most rules read first.
#[inline(always)]
pub(super) fn prefetch_event(ev: &Event) {
    let p = &ev.proc;
    prefetch(p.name.as_ptr());
    prefetch(p.exepath.as_ptr());
    if let Some(a) = p.argv.first() {
        prefetch(a.as_ptr());
    }
    if let Some(a) = p.argv.get(1) {
        prefetch(a.as_ptr());
    }
    if let Some(f) = &ev.fd {
        prefetch(f.name.as_ptr());
    }
    if let Some(c) = &ev.container {
        prefetch(c.id.as_ptr());
        if let Some(i) = &c.image {
            prefetch(i.as_ptr());
        }
    }
}
