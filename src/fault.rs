//! Test-only fault injection: a run that dies (SIGKILL, as a power cut or `kill -9` would) right
//! after a named step, so the tests can prove that a run killed at any step boundary leaves a
//! state the next run converges from. Only debug builds have it (what ships is a release build),
//! and it does nothing unless `ARQ_LOCKDOWN_KILL_AFTER` names the step.

/// Marks the end of `step`; in a debug build with `ARQ_LOCKDOWN_KILL_AFTER=<step>`, the process
/// dies here.
pub fn after(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("ARQ_LOCKDOWN_KILL_AFTER").is_some_and(|s| s == step) {
        // SAFETY: kill and getpid have no preconditions; SIGKILL ends this process at once.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}
