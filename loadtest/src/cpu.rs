//! CPU time and memory from `/proc`: per process group (Mosquitto, Bedside,
//! PostgreSQL, this load test), so a run says which part of the machine was
//! busy, and of one process (the SFU under test).

use std::collections::BTreeMap;

use serde::Serialize;

/// The groups reported, by process name prefix.
const GROUPS: [&str; 4] = ["mosquitto", "bedside", "postgres", "loadtest"];

/// Linux's USER_HZ: the unit of utime and stime in `/proc/<pid>/stat`
/// (100 on every mainstream architecture).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds per group at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample(BTreeMap<&'static str, f64>);

/// Cores used per group between two samples.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Usage {
    pub(crate) group: &'static str,
    pub(crate) cores: f64,
}

impl Sample {
    /// Reads every process's CPU time now. Processes that vanish mid-read
    /// are skipped; exited processes' time is lost, which only matters for
    /// PostgreSQL backends that end during the window.
    pub(crate) fn now() -> Self {
        let mut totals = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self(totals);
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((comm, ticks)) = parse_stat(&stat)
                && let Some(group) = GROUPS.iter().find(|g| comm.starts_with(**g))
            {
                *totals.entry(*group).or_insert(0.0) += ticks / TICKS_PER_SECOND;
            }
        }
        Self(totals)
    }

    /// Cores each group used from `earlier` to `self` over `seconds`.
    pub(crate) fn since(&self, earlier: &Sample, seconds: f64) -> Vec<Usage> {
        GROUPS
            .iter()
            .map(|group| Usage {
                group,
                cores: (self.0.get(group).unwrap_or(&0.0) - earlier.0.get(group).unwrap_or(&0.0))
                    .max(0.0)
                    / seconds,
            })
            .collect()
    }
}

/// CPU seconds (user and system, all threads) process `pid` has used.
pub(crate) fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks / TICKS_PER_SECOND)
}

/// Resident memory of process `pid`, in bytes.
pub(crate) fn process_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss(&status)
}

/// Context switches (voluntary and not) of all of process `pid`'s
/// threads: how often its threads went to sleep or were preempted.
pub(crate) fn process_context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
            total += parse_context_switches(&status).unwrap_or(0);
        }
    }
    Some(total)
}

fn parse_context_switches(status: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// (process name, utime + stime in ticks) from a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    // The name is in parentheses and may itself contain spaces or ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is 14, stime 15.
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_and_cpu_ticks_from_a_stat_line() {
        let line = "4242 (postgres: wal writer) S 1 2 3 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 10";
        assert_eq!(parse_stat(line), Some(("postgres: wal writer", 300.0)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn reads_resident_memory_from_a_status_text() {
        let status = "Name:\tbedside\nVmPeak:\t  9000 kB\nVmRSS:\t   1234 kB\nThreads:\t4\n";
        assert_eq!(parse_rss(status), Some(1234 * 1024));
        assert_eq!(parse_rss("Name:\tx\n"), None);
    }

    #[test]
    fn adds_voluntary_and_involuntary_context_switches() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_context_switches(status), Some(123));
        assert_eq!(parse_context_switches("Name:\tx\n"), None);
    }
}
