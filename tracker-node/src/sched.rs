//! Process-level scheduling and memory settings: thread priorities (Raft's threads keep the
//! default, the API's and the argon2 and snapshot threads yield to them) and glibc's malloc
//! tuning (a node's many threads would otherwise each grow an arena of their own and keep
//! freed memory, e.g. a snapshot's copy of the state, long after use).

/// Niceness of the API runtime's threads.
pub const API_THREAD_NICE: i32 = 5;
/// Niceness of the argon2 workers and the snapshot-writing thread.
pub const BACKGROUND_THREAD_NICE: i32 = 10;
/// glibc malloc arenas: enough for two cores' worth of concurrent allocation.
const MALLOC_ARENAS: i32 = 2;

/// Lowers the calling thread's scheduling priority (on Linux, nice applies per thread).
pub fn lower_thread_priority(nice: i32) {
    // SAFETY: setpriority on the calling thread's own id; no memory is touched.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

/// For threads that do long background work.
pub fn background_thread() {
    lower_thread_priority(BACKGROUND_THREAD_NICE);
}

/// Caps glibc's malloc arenas; call first thing in `main`, before any thread starts.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// Gives freed heap memory back to the system (after a snapshot and the log purge that follows).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
