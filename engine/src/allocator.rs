//! Process-wide allocator settings for the long-running programs.
//!
//! glibc gives threads their own malloc arenas (up to eight per core). Piece buffers are
//! allocated on a tokio worker and freed on a disk thread, so several arenas each keep their
//! own free megabytes, and trimming them gives pages back that the next piece faults in
//! again. One arena keeps the peak near the live data. Measured on a 1 GiB download
//! (`harness datapath --clients instream`): peak anonymous memory 33-35 -> 25-27 MiB and
//! peer CPU 1.5 -> 1.3 CPU-s/GiB. Lock contention stays negligible: small allocations are
//! served from glibc's per-thread caches without taking the arena lock.
//!
//! The same churn went on inside the one arena: a freed piece buffer at the top of the heap
//! was trimmed (`brk` down) and the next one faulted in again, and buffers above the dynamic
//! mmap threshold were mapped and unmapped per piece. Profiled on the loopback fanout (1 seed
//! -> 8 peers, `perf record -e cpu-clock`), page faults, `brk` and `munmap` were about a sixth
//! of instream's CPU. So piece-sized buffers stay in the heap ([`MMAP_THRESHOLD`]) and the
//! heap keeps up to [`TRIM_THRESHOLD`] free at its top: memory a peak has made resident stays
//! resident (bounded by that peak), and is reused instead of faulted in again.

/// Allocations at least this large get their own mapping: above the largest piece buffer
/// (pieces are at most 16 MiB), so piece buffers come from the heap. 32 MiB is glibc's
/// largest accepted value on 64-bit.
pub const MMAP_THRESHOLD: usize = 32 * 1024 * 1024;

/// Free memory the heap may keep at its top before giving it back to the kernel.
pub const TRIM_THRESHOLD: usize = 128 * 1024 * 1024;

/// Limits glibc to one malloc arena that keeps piece-sized memory (see the module header).
/// Call first thing in `main`, before any thread starts.
pub fn use_one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters, and no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}
