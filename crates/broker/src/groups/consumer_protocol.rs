//! The consumer protocol ("consumer" protocol type) carried opaquely inside
//! JoinGroup and SyncGroup. The broker reads it only to answer questions
//! about a group (which topics it subscribes to, which partitions a member
//! owns), never to assign. Hand-written because `kafka-protocol` does not
//! generate these embedded schemas; both start with an i16 version, and the
//! fields read here have the same layout in every version.

fn read_i16(b: &[u8], pos: &mut usize) -> Option<i16> {
    let v = b.get(*pos..*pos + 2)?;
    *pos += 2;
    Some(i16::from_be_bytes([v[0], v[1]]))
}

fn read_i32(b: &[u8], pos: &mut usize) -> Option<i32> {
    let v = b.get(*pos..*pos + 4)?;
    *pos += 4;
    Some(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

fn read_string(b: &[u8], pos: &mut usize) -> Option<String> {
    let len = read_i16(b, pos)?;
    if len < 0 {
        return Some(String::new());
    }
    let v = b.get(*pos..*pos + len as usize)?;
    *pos += len as usize;
    Some(String::from_utf8_lossy(v).into_owned())
}

/// Topics named in a subscription (`version, topics: [string], ...`).
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut pos = 0;
    read_i16(metadata, &mut pos)?;
    let n = read_i32(metadata, &mut pos)?;
    if n < 0 || n as usize > metadata.len() {
        return None;
    }
    (0..n).map(|_| read_string(metadata, &mut pos)).collect()
}

/// Partitions in an assignment (`version, [topic, [partition]], ...`).
pub fn assignment_partitions(assignment: &[u8]) -> Option<Vec<(String, i32)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let mut pos = 0;
    read_i16(assignment, &mut pos)?;
    let n = read_i32(assignment, &mut pos)?;
    if n < 0 || n as usize > assignment.len() {
        return None;
    }
    let mut out = Vec::new();
    for _ in 0..n {
        let topic = read_string(assignment, &mut pos)?;
        let m = read_i32(assignment, &mut pos)?;
        if m < 0 || m as usize > assignment.len() {
            return None;
        }
        for _ in 0..m {
            out.push((topic.clone(), read_i32(assignment, &mut pos)?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subscriptions_and_assignments() {
        let mut sub = vec![0, 1, 0, 0, 0, 2];
        for t in ["ab", "c"] {
            sub.extend_from_slice(&(t.len() as i16).to_be_bytes());
            sub.extend_from_slice(t.as_bytes());
        }
        sub.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(subscription_topics(&sub).unwrap(), vec!["ab", "c"]);
        let mut asg = vec![
            0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5,
        ];
        asg.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            assignment_partitions(&asg).unwrap(),
            vec![("t".into(), 3), ("t".into(), 5)]
        );
        assert!(subscription_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_none());
        assert_eq!(assignment_partitions(&[]).unwrap(), vec![]);
    }
}
