//! Process measurements: CPU time (getrusage), current and peak resident
//! set size.

use std::time::Duration;

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: `rusage` is plain old data, so an all-zero value is valid, and
    // getrusage only writes into the struct we pass by exclusive pointer.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// User + system CPU time of the whole process so far (all threads).
pub fn process_cpu() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// User + system CPU time of the calling thread so far.
pub fn thread_cpu() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

/// Peak resident set size of the process (`VmHWM`), in KiB, if the kernel
/// reports it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets the kernel's peak resident set size (`VmHWM`) to the current
/// one, so that [`peak_rss_kib`] measures from here (Linux: writes `5` to
/// `/proc/self/clear_refs`). Returns whether the kernel took it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Current resident set size of the process (`VmRSS`), in KiB, if the
/// kernel reports it.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = thread_cpu();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu() > before);
        assert!(process_cpu() >= thread_cpu());
    }

    #[test]
    fn peak_rss_is_reported_on_linux() {
        assert!(peak_rss_kib().is_some_and(|k| k > 0));
    }

    #[test]
    fn peak_rss_resets_to_the_current_rss() {
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        drop(block);
        if reset_peak_rss() {
            let peak = peak_rss_kib().unwrap_or(0);
            let now = rss_kib().unwrap_or(0);
            // The 64 MiB block is gone from the peak (a little slack for
            // what was allocated between the two reads).
            assert!(peak < now + 32 * 1024, "peak {peak} KiB, now {now} KiB");
        }
    }

    #[test]
    fn rss_grows_when_memory_is_touched() {
        let before = rss_kib().unwrap_or(0);
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = rss_kib().unwrap_or(0);
        assert!(after >= before + 32 * 1024, "{before} KiB -> {after} KiB");
        assert!(peak_rss_kib().unwrap_or(0) >= after);
    }
}
