//! The latency harness must not rot: its `--quick` mode runs here, checking sanity only (every
//! command sent got its reply, the histograms are filled), never timings.

#[path = "../benches/support/harness.rs"]
#[allow(dead_code)] // the bench uses the rest of it
mod harness;

use harness::{HarnessConfig, Pipeline, run};

#[test]
fn quick_harness_counts_every_command_and_records_latency() {
    let cfg = HarnessConfig::quick();
    let mut lines = Vec::new();
    let results = run(&cfg, |l| lines.push(l.to_owned()));
    assert_eq!(results.len(), 3, "{lines:?}");
    for r in &results {
        assert_eq!(r.sent, r.planned, "{:?}: everything planned was sent", r.pipeline);
        assert_eq!(r.received, r.sent, "{:?}: one reply per command", r.pipeline);
        assert!(!r.hist.is_empty() && r.hist.max() > 0, "{:?}: latencies recorded", r.pipeline);
        // The engine thread timed every command it applied, cascades apart.
        let timed = r.engine.service.len() + r.engine.cascades.len();
        assert_eq!(timed, r.sent, "{:?}: every command's service time", r.pipeline);
        assert!(r.engine.service.max() > 0);
        // Its scheduling counters were read over the measured run (it spun on the CPU).
        assert!(
            r.engine_sched.run_ns > 0,
            "{:?}: engine schedstat {:?}",
            r.pipeline,
            r.engine_sched
        );
        assert!(r.generator_sched.run_ns > 0, "{:?}: generator schedstat", r.pipeline);
        assert!(r.measured > std::time::Duration::ZERO);
        // One hiccup histogram per core (up to two), each with samples after its floor.
        let cores = core_affinity::get_core_ids().map_or(0, |c| c.len().min(2));
        assert_eq!(r.hiccups.len(), cores, "{:?}: a hiccup meter per core", r.pipeline);
        assert!(r.hiccups.iter().all(|h| h.len() > 50), "{:?}: hiccup samples", r.pipeline);
    }
    assert_eq!(
        results.iter().map(|r| r.pipeline).collect::<Vec<_>>(),
        vec![Pipeline::Disruptor, Pipeline::Crossbeam, Pipeline::Mpsc]
    );
    assert!(lines.iter().any(|l| l.contains("[1/3] disruptor")), "progress is reported: {lines:?}");
}

#[test]
fn split_hand_offs_times_each_command_three_ways_and_the_replies_still_flow() {
    let cfg = HarnessConfig {
        split_hand_offs: true,
        hiccup: false,
        pipelines: vec![Pipeline::Disruptor, Pipeline::Crossbeam],
        ..HarnessConfig::quick()
    };
    for r in run(&cfg, |_| {}) {
        assert_eq!(r.received, r.sent, "{:?}: every reply still reaches the generator", r.pipeline);
        let h = r.engine.hand_offs.as_ref().expect("hand-offs timed when asked");
        let applied = r.engine.service.len() + r.engine.cascades.len();
        assert_eq!(applied, r.sent, "{:?}: every command's apply timed", r.pipeline);
        assert_eq!(h.hand_in.len(), r.sent, "{:?}: every command's hand-in", r.pipeline);
        assert_eq!(h.hand_out.len(), r.sent, "{:?}: every command's hand-out", r.pipeline);
    }
}
