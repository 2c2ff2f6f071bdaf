//! CPU time and resident memory of a process, from `/proc/<pid>/stat` and `/proc/<pid>/status`
//! (Linux). `None` where they cannot be read (another OS, or the process is gone).

/// Clock ticks per second of `utime`/`stime` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcReading {
    /// User + system CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Resident set size, MiB.
    pub rss_mib: f64,
}

/// Reads process `pid` (`"self"` for this one).
pub fn read(pid: &str) -> Option<ProcReading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcReading {
        cpu_secs: cpu_secs(&stat)?,
        rss_mib: rss_mib(&status)?,
    })
}

/// utime + stime of a `/proc/<pid>/stat` line. The command name may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn cpu_secs(stat: &str) -> Option<f64> {
    let (_, after) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After "(comm)": state is field 0, utime 11, stime 12 (stat fields 14 and 15).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// `VmRSS` of a `/proc/<pid>/status`, in MiB.
fn rss_mib(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// This process's soft limit of open files (`/proc/self/limits`), if known.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// CPU cores used between two readings `secs` apart.
pub fn cores(before: ProcReading, after: ProcReading, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    ((after.cpu_secs - before.cpu_secs) / secs).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat =
            "4242 (edgecart hub) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(cpu_secs(stat), Some(3.0));
        let status = "Name:\tedgecart-hub\nVmPeak:\t  200000 kB\nVmRSS:\t   51200 kB\nThreads: 9\n";
        assert_eq!(rss_mib(status), Some(50.0));
        assert_eq!(cpu_secs("garbage"), None);
    }

    #[test]
    fn reads_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_open_files(limits), Some(1024));
        assert_eq!(parse_open_files("nothing"), None);
    }

    #[test]
    fn reads_this_process() {
        let r = read("self").expect("/proc/self is readable on Linux");
        assert!(r.rss_mib > 1.0, "{r:?}");
        assert!(r.cpu_secs >= 0.0);
    }
}
