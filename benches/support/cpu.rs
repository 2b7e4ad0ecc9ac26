//! CPU used by this process's threads, from `/proc/self/task/*/stat` (Linux), in clock ticks
//! (100 a second): the benches report work per request or per event with it.

/// Ticks (utime + stime) used so far by the threads whose name `counted` accepts.
pub fn cpu_ticks(counted: impl Fn(&str) -> bool) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let name =
            stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map_or("", |(n, _)| n);
        if !counted(name) {
            continue;
        }
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += n(11) + n(12); // utime + stime
    }
    total
}
