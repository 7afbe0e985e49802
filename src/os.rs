//! The few things Sluice asks of the operating system directly, behind safe functions.

/// Kills this process with SIGKILL: no destructor, flush or handler runs, as with `kill -9`.
pub fn kill_self() -> ! {
    // SAFETY: kill(2) and getpid(2) have no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL cannot be caught")
}

/// Gives the calling thread the lowest CPU priority (nice 19): it runs when no thread of
/// normal priority, here or in the database next door, wants the core. Linux applies nice
/// values per thread. Returns whether it worked.
pub fn lower_thread_priority() -> bool {
    // SAFETY: gettid(2) and setpriority(2) have no memory-safety preconditions; on Linux
    // PRIO_PROCESS with a thread id changes only that thread.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) == 0
    }
}

/// The effective user id of this process: whose files it may trust.
pub fn effective_user() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
