//! The recent commits of every consumer group, fed by the group
//! coordinator on each OffsetCommit: per group-partition, Burrow's window of
//! commits and the timestamp of the first uncommitted record (valid while
//! the committed offset stays where it was read), so a lag scrape looks up
//! one entry per group-partition and reads storage only when a commit moved.

use crate::burrow::{CommitPoint, CommitWindow};
use parking_lot::Mutex;
use std::collections::HashMap;

/// What is kept per group-partition.
#[derive(Default)]
pub struct PartitionTrack {
    pub window: CommitWindow,
    /// (first uncommitted offset, that record's timestamp)
    pub age_at: Option<(i64, i64)>,
}

/// topic → partition → track.
pub type TopicTracks = HashMap<String, HashMap<i32, PartitionTrack>>;

/// Commit windows and event-age timestamps of every group.
#[derive(Default)]
pub struct CommitTracker {
    /// group → topic → partition → track (nested so lookups by `&str`
    /// allocate nothing).
    tracks: Mutex<HashMap<String, TopicTracks>>,
}

impl CommitTracker {
    /// Adds a commit to the group-partition's window.
    pub fn record_commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        log_end: i64,
        now_ms: i64,
    ) {
        let mut tracks = self.tracks.lock();
        track_mut(&mut tracks, group, topic, partition)
            .window
            .push(CommitPoint {
                offset,
                lag: (log_end - offset).max(0),
                time_ms: now_ms,
            });
    }

    /// Remembers the timestamp of the record at `offset` (the group's first
    /// uncommitted one).
    pub fn record_age(&self, group: &str, topic: &str, partition: i32, offset: i64, ts: i64) {
        let mut tracks = self.tracks.lock();
        track_mut(&mut tracks, group, topic, partition).age_at = Some((offset, ts));
    }

    pub fn forget_group(&self, group: &str) {
        self.tracks.lock().remove(group);
    }

    /// Runs `f` over one topic's tracks of a group (created on first use),
    /// under the tracker's lock; `f` is called once per topic of a scrape.
    pub fn with_topic<R>(
        &self,
        group: &str,
        topic: &str,
        f: impl FnOnce(&mut HashMap<i32, PartitionTrack>) -> R,
    ) -> R {
        let mut tracks = self.tracks.lock();
        f(topic_tracks_mut(&mut tracks, group, topic))
    }
}

/// The tracks of a group's topic, created on first use (keys are allocated
/// only then).
fn topic_tracks_mut<'a>(
    tracks: &'a mut HashMap<String, TopicTracks>,
    group: &str,
    topic: &str,
) -> &'a mut HashMap<i32, PartitionTrack> {
    if !tracks.contains_key(group) {
        tracks.insert(group.to_string(), HashMap::new());
    }
    let topics = tracks.get_mut(group).expect("inserted above");
    if !topics.contains_key(topic) {
        topics.insert(topic.to_string(), HashMap::new());
    }
    topics.get_mut(topic).expect("inserted above")
}

/// The track of a group-partition, created on first use.
fn track_mut<'a>(
    tracks: &'a mut HashMap<String, TopicTracks>,
    group: &str,
    topic: &str,
    partition: i32,
) -> &'a mut PartitionTrack {
    topic_tracks_mut(tracks, group, topic)
        .entry(partition)
        .or_default()
}
