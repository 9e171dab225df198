//! A counting global allocator for tests that bound memory: live bytes, their peak, and the
//! largest single request, measured around a closure. A test binary installs it with
//! `#[global_allocator] static A: alloc::Counting = alloc::Counting;`.
//!
//! The counters are process-wide, so measured tests must not overlap: each holds [`serial`]'s
//! guard for its whole run (set-up included).
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// Requests above this fail (as an allocation on a machine without the memory would), so that a
/// runaway request ends in an allocation error rather than in swapping.
const REFUSED_ABOVE: usize = 4 << 30;

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
}

/// Records a request (made or refused) and says whether it may go ahead.
fn request(size: usize) -> bool {
    LARGEST.fetch_max(size, Relaxed);
    size <= REFUSED_ABOVE
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !request(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !request(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !request(new_size) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

/// Memory a closure used: the peak of live bytes above what was live when it started, and its
/// largest single request (allocation or reallocation size, made or refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub peak: usize,
    pub largest: usize,
}

/// Runs `f` and measures its [`Usage`].
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Usage) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    LARGEST.store(0, Relaxed);
    let out = f();
    let usage = Usage { peak: PEAK.load(Relaxed).saturating_sub(base), largest: LARGEST.load(Relaxed) };
    (out, usage)
}

static SERIAL: Mutex<()> = Mutex::new(());

/// A guard that keeps measured tests from running at the same time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub const MIB: usize = 1 << 20;
