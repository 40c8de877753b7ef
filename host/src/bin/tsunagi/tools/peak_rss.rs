//! The benchmarks' memory figure: this process's peak resident set size, reset between the
//! parts a benchmark compares (Linux `/proc`; elsewhere the figure is missing, not wrong).

/// Resets the kernel's peak-RSS mark for this process (Linux: `clear_refs` value 5).
pub fn reset() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size since the last reset, from `/proc/self/status` (VmHWM).
pub fn mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The peak since the last reset as a table cell.
pub fn shown() -> String {
    cell(mib())
}

/// A peak as a table cell: `250 MiB`, or `n/a` where it could not be read.
pub fn cell(mib: Option<f64>) -> String {
    mib.map_or("n/a".to_string(), |mb| format!("{mb:.0} MiB"))
}
