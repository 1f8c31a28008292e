//! The process families Prometheus's own clients export (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, ...), read from `/proc/self` at
//! each scrape, and `esm_build_info`. Dashboards and alerts written for any service
//! (CPU, memory against its budget, descriptors against the limit) work on esm as they
//! are. On a system without `/proc` the process families are left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports times in `/proc` in clock ticks of 1/100 s, whatever the kernel's HZ.
const TICKS_PER_SECOND: f64 = 100.0;

/// What one look at `/proc/self` found.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    start_time_seconds: f64,
    open_fds: i64,
    max_fds: i64,
}

impl Sample {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        parse(&stat, &status, &boot, &limits, open_fds)
    }
}

/// A [`Sample`] from the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat`
/// and `/proc/self/limits`, and the number of entries of `/proc/self/fd`.
fn parse(stat: &str, status: &str, boot: &str, limits: &str, open_fds: usize) -> Option<Sample> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields
    // from the last `)`. Field 3 is then the first after it.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime, start_ticks, vsize) = (field(14)?, field(15)?, field(22)?, field(23)?);
    let kib =
        |key: &str| status.lines().find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse::<i64>().ok());
    let booted = boot.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
    let max_fds =
        limits.lines().find_map(|l| l.strip_prefix("Max open files")?.split_whitespace().next()?.parse().ok());
    Some(Sample {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        resident_bytes: kib("VmRSS:")? * 1024,
        virtual_bytes: i64::try_from(vsize).unwrap_or(i64::MAX),
        start_time_seconds: booted as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        open_fds: i64::try_from(open_fds).unwrap_or(i64::MAX),
        // "unlimited" is no number: reported as the largest gauge.
        max_fds: max_fds.unwrap_or(i64::MAX),
    })
}

/// The process families and `esm_build_info`, computed at each scrape.
#[derive(Debug, Default)]
pub(super) struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut build = encoder.encode_descriptor(
            "esm_build_info",
            "Always 1; the label says which esm this is",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1).encode(build.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        let Some(sample) = Sample::read() else { return Ok(()) };
        let cpu = encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time this process has spent, in seconds",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(sample.cpu_seconds).encode(cpu)?;
        for (name, help, value) in [
            ("process_resident_memory_bytes", "Resident memory of this process, in bytes", sample.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory of this process, in bytes", sample.virtual_bytes),
            ("process_open_fds", "File descriptors this process holds open", sample.open_fds),
            ("process_max_fds", "The most file descriptors this process may open (its soft limit)", sample.max_fds),
        ] {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        let start = encoder.encode_descriptor(
            "process_start_time_seconds",
            "When this process started, in seconds since the Unix epoch",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(sample.start_time_seconds).encode(start)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_read_from_proc_texts_even_with_a_spaced_command_name() {
        let stat = "4242 (tokio rt) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 12345 104857600 2000 18446744073709551615";
        let status = "Name:\tesm\nVmRSS:\t   8192 kB\nThreads:\t9\n";
        let boot = "cpu  1 2 3\nbtime 1765000000\nprocesses 42\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 1048576              files\n";
        let sample = parse(stat, status, boot, limits, 17).expect("parsed");
        assert_eq!(
            sample,
            Sample {
                cpu_seconds: 3.0,
                resident_bytes: 8192 * 1024,
                virtual_bytes: 104_857_600,
                start_time_seconds: 1_765_000_123.45,
                open_fds: 17,
                max_fds: 1024,
            }
        );
        assert_eq!(parse("garbage", status, boot, limits, 1), None);
        let unlimited = limits.replace("1024  ", "unlimited");
        assert_eq!(parse(stat, status, boot, &unlimited, 1).map(|s| s.max_fds), Some(i64::MAX));
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = Sample::read().expect("a Linux /proc");
        assert!(sample.resident_bytes > 0 && sample.open_fds > 0 && sample.max_fds >= sample.open_fds);
    }
}
