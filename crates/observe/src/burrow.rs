//! Lag health with Burrow's evaluation rules. For every partition a group
//! commits, a sliding window keeps the last commits (offset, lag at commit
//! time, commit time). A partition is:
//!
//! - `OK` when any lag in the window (or the current lag) is zero;
//! - otherwise `REWIND` if a committed offset went backwards within the window,
//!   `STOP` if the time since the last commit exceeds the window's span
//!   (first to last commit), `STALL` if the offset never moved across the
//!   window while commits kept coming, `WARN` if the lag never decreased;
//! - else `OK`.
//!
//! A group is `ERR` when any partition is STOP, STALL or REWIND, `WARN` when
//! any is WARN, else `OK`. The trend is the lag's slope over the window in
//! messages per second (positive: falling behind).

use serde::Serialize;
use std::collections::VecDeque;

/// Commits kept per partition (Burrow's default `intervals`).
pub const WINDOW: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PartitionStatus {
    Ok,
    Warn,
    Stop,
    Stall,
    Rewind,
}

impl PartitionStatus {
    /// Every status, in declaration order (`status as usize` indexes it).
    pub const ALL: [PartitionStatus; 5] = [
        PartitionStatus::Ok,
        PartitionStatus::Warn,
        PartitionStatus::Stop,
        PartitionStatus::Stall,
        PartitionStatus::Rewind,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PartitionStatus::Ok => "OK",
            PartitionStatus::Warn => "WARN",
            PartitionStatus::Stop => "STOP",
            PartitionStatus::Stall => "STALL",
            PartitionStatus::Rewind => "REWIND",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GroupStatus {
    Ok,
    Warn,
    Err,
}

impl GroupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Ok => "OK",
            GroupStatus::Warn => "WARN",
            GroupStatus::Err => "ERR",
        }
    }
}

/// One commit as seen by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPoint {
    pub offset: i64,
    pub lag: i64,
    pub time_ms: i64,
}

/// The sliding window of one group-partition.
#[derive(Debug, Clone, Default)]
pub struct CommitWindow {
    points: VecDeque<CommitPoint>,
}

impl CommitWindow {
    pub fn push(&mut self, p: CommitPoint) {
        self.points.push_back(p);
        while self.points.len() > WINDOW {
            self.points.pop_front();
        }
    }

    pub fn points(&self) -> impl Iterator<Item = &CommitPoint> {
        self.points.iter()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Status with the partition's current lag at `now_ms`.
    pub fn evaluate(&self, current_lag: i64, now_ms: i64) -> PartitionStatus {
        let (Some(first), Some(last)) = (self.points.front(), self.points.back()) else {
            return PartitionStatus::Ok;
        };
        if current_lag <= 0 || self.points.iter().any(|p| p.lag <= 0) {
            return PartitionStatus::Ok;
        }
        let pairs: Vec<(&CommitPoint, &CommitPoint)> =
            self.points.iter().zip(self.points.iter().skip(1)).collect();
        if pairs.iter().any(|(a, b)| b.offset < a.offset) {
            return PartitionStatus::Rewind;
        }
        if self.points.len() >= 2 && now_ms - last.time_ms > last.time_ms - first.time_ms {
            return PartitionStatus::Stop;
        }
        if self.points.len() >= 2 && pairs.iter().all(|(a, b)| a.offset == b.offset) {
            return PartitionStatus::Stall;
        }
        if self.points.len() >= 2 && pairs.iter().all(|(a, b)| b.lag >= a.lag) {
            return PartitionStatus::Warn;
        }
        PartitionStatus::Ok
    }

    /// Lag change per second over the window.
    pub fn trend(&self) -> f64 {
        match (self.points.front(), self.points.back()) {
            (Some(a), Some(b)) if b.time_ms > a.time_ms => {
                (b.lag - a.lag) as f64 * 1000.0 / (b.time_ms - a.time_ms) as f64
            }
            _ => 0.0,
        }
    }
}

/// A group's status from its partitions' statuses.
pub fn group_status(partitions: impl IntoIterator<Item = PartitionStatus>) -> GroupStatus {
    let mut status = GroupStatus::Ok;
    for p in partitions {
        match p {
            PartitionStatus::Stop | PartitionStatus::Stall | PartitionStatus::Rewind => {
                return GroupStatus::Err
            }
            PartitionStatus::Warn => status = GroupStatus::Warn,
            PartitionStatus::Ok => {}
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(points: &[(i64, i64, i64)]) -> CommitWindow {
        let mut w = CommitWindow::default();
        for &(offset, lag, time_ms) in points {
            w.push(CommitPoint {
                offset,
                lag,
                time_ms,
            });
        }
        w
    }

    #[test]
    fn burrow_rules() {
        // Caught up at some point: OK.
        assert_eq!(
            window(&[(10, 5, 0), (20, 0, 1000)]).evaluate(3, 1500),
            PartitionStatus::Ok
        );
        // Moving and lag shrinking: OK.
        assert_eq!(
            window(&[(10, 50, 0), (40, 30, 1000), (70, 10, 2000)]).evaluate(10, 2500),
            PartitionStatus::Ok
        );
        // Moving but lag growing: WARN.
        assert_eq!(
            window(&[(10, 50, 0), (20, 60, 1000), (30, 70, 2000)]).evaluate(70, 2500),
            PartitionStatus::Warn
        );
        // Committing the same offset with lag: STALL.
        assert_eq!(
            window(&[(10, 50, 0), (10, 50, 1000), (10, 60, 2000)]).evaluate(60, 2500),
            PartitionStatus::Stall
        );
        // No commit for longer than the window spans: STOP.
        assert_eq!(
            window(&[(10, 50, 0), (20, 40, 1000)]).evaluate(40, 5000),
            PartitionStatus::Stop
        );
        // Offset went backwards: REWIND.
        assert_eq!(
            window(&[(50, 10, 0), (20, 40, 1000)]).evaluate(40, 1200),
            PartitionStatus::Rewind
        );
        assert_eq!(CommitWindow::default().evaluate(10, 0), PartitionStatus::Ok);
    }

    #[test]
    fn group_rollup_and_trend() {
        use PartitionStatus::*;
        assert_eq!(group_status([Ok, Ok]), GroupStatus::Ok);
        assert_eq!(group_status([Ok, Warn]), GroupStatus::Warn);
        assert_eq!(group_status([Warn, Stall]), GroupStatus::Err);
        let w = window(&[(0, 100, 0), (10, 200, 2000)]);
        assert!((w.trend() - 50.0).abs() < 1e-9);
        let mut w = CommitWindow::default();
        for i in 0..20 {
            w.push(CommitPoint {
                offset: i,
                lag: 1,
                time_ms: i,
            });
        }
        assert_eq!(w.len(), WINDOW);
    }
}
