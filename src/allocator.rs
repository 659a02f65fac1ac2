//! The allocator's settings: how soon memory freed by a run goes back to the system, and
//! no transparent huge pages.
//!
//! Both binaries allocate with mimalloc, which by default keeps freed pages for a second
//! before handing them back. A run frees a lot as it goes (each tree is built in merges,
//! the plan is dropped before the commit), so with that default its peak is close to the
//! sum of everything it once held: a third more at the peak of a 300,000-file push.
//!
//! mimalloc also asks the kernel for transparent huge pages (its arena is reserved, and
//! advised so, before `main` runs, so its own option comes too late). Memory handed back
//! and taken again soon after (a transfer's buffers) then costs a 2 MiB page fault each
//! time, and the kernel compacts memory to find one: on a copy of `/usr/share` that was a
//! fifth more system time, and more resident memory, for nothing a run gains.

/// `mi_option_purge_delay`: the option's place in mimalloc's `mi_option_t` (15 in v2 and
/// v3 alike; the test below checks it against the environment variable of that name).
const PURGE_DELAY: i32 = 15;

/// Milliseconds freed pages wait before they go back: long enough that a transfer's
/// buffers, freed and taken again within microseconds, are not returned and zeroed each
/// time (with 0, a 1 GiB push spends twice the system time); short enough to keep the
/// peak near what is in use.
const PURGE_DELAY_MS: i64 = 10;

/// Sets mimalloc's purge delay, unless `MIMALLOC_PURGE_DELAY` in the environment says
/// otherwise, and turns transparent huge pages off for the process (and what it starts).
/// Called first thing in `main`, before any other thread exists.
#[allow(unsafe_code)]
pub fn tune() {
    // SAFETY: sets a plain integer in mimalloc's option table; mimalloc documents its
    // option setters as not thread-safe, and no other thread runs yet.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS as _) }
    // A kernel without the setting runs as before: nothing to report.
    crate::disk::sys::disable_transparent_huge_pages();
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    fn purge_delay() -> i64 {
        // SAFETY: reads an integer from mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) as i64 }
    }

    const NAME: &str = "allocator::tests::the_option_tuned_is_the_purge_delay";

    /// Run again with `MIMALLOC_PURGE_DELAY` set, the option at `PURGE_DELAY` holds its
    /// value (so the index is the right one) and `tune` leaves it; run plainly, `tune`
    /// sets it.
    #[test]
    fn the_option_tuned_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            tune();
            assert_eq!(purge_delay(), 777);
            return;
        }
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
            .env("MIMALLOC_PURGE_DELAY", "777")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&child.stdout);
        assert!(child.status.success(), "{out}");
        assert!(out.contains("1 passed"), "the child ran no test: {out}");
        tune();
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
        assert_eq!(
            crate::disk::sys::transparent_huge_pages_disabled(),
            Some(true)
        );
    }
}
