//! Process metrics, read from `/proc` at each scrape (nothing on the request path):
//! the standard unprefixed `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds` and `process_start_time_seconds` that dashboards expect. Where `/proc` is not there (not Linux), they are left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// `/proc`'s clock ticks: USER_HZ, 100 on every Linux ABI the gateway builds for.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug)]
pub struct ProcessCollector;

/// What `/proc` says about this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: i64,
    pub open_fds: i64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command name, which is in parentheses and may contain spaces.
        let after = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        // utime, stime and starttime are fields 14, 15 and 22 of stat(5); `after` starts at 3.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let cpu_seconds = (field(14)? + field(15)?) as f64 / TICKS_PER_SECOND;
        let started_after_boot = field(22)? as f64 / TICKS_PER_SECOND;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let resident_kib = std::fs::read_to_string("/proc/self/status")
            .ok()?
            .lines()
            .find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<i64>()
                    .ok()
            })?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
        Some(ProcessStats {
            cpu_seconds,
            resident_bytes: resident_kib * 1024,
            open_fds,
            start_time_seconds: boot as f64 + started_after_boot,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time the process has used",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, ConstGauge<i64>); 2] = [
            (
                "process_resident_memory_bytes",
                "Resident memory of the process",
                ConstGauge::new(p.resident_bytes),
            ),
            (
                "process_open_fds",
                "File descriptors the process holds open",
                ConstGauge::new(p.open_fds),
            ),
        ];
        for (name, help, g) in gauges {
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let start = ConstGauge::new(p.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "When the process started, in seconds since the Unix epoch",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let p = ProcessStats::read().expect("/proc on Linux");
        assert!(p.resident_bytes > 1024 * 1024, "{p:?}");
        assert!(p.open_fds >= 3, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 3600.0,
            "{p:?}"
        );
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let text = crate::metrics::encode(&registry);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
    }
}
