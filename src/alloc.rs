//! Keeps glibc's allocator from holding on to memory the run no longer uses.
//!
//! Why: a run frees and re-allocates many buffers of 1-30 MiB (Parquet row groups and pages,
//! upload parts, response bodies) on several threads. With glibc's defaults each thread may get
//! its own arena, and after the first large buffer is freed the mmap threshold rises to its size,
//! so later buffers of that size come from the arenas, where freed space is kept: peak RSS then
//! grew with the volume of data (CDN benchmark: 97 MiB at 1x, 255 MiB at 10x). Two arenas and a
//! fixed 1 MiB mmap threshold (larger buffers are mapped and unmapped, so freeing returns them)
//! brought the 10x run to about 130 MiB for a few percent of time (BENCHMARKS.md). An operator's
//! own `MALLOC_ARENA_MAX` / `MALLOC_MMAP_THRESHOLD_` win: glibc reads them, and they are left alone.

/// Applies the settings above; call first thing in `main`. A no-op off glibc.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only changes allocator parameters; any value is accepted or refused
            // (return 0), and no allocation is in flight on another thread this early.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        }
    }
}
