//! Checks a raft log batch against the log invariants before it is written,
//! shared by every [`RaftLogEngine`](crate::RaftLogEngine) implementation.

use raft::eraftpb::Entry;

use crate::id_hash::IdMap;
use crate::{Error, Result};

/// What a batch item does to a region's span of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpanChange {
    /// Entries `[first, last]` appended (replacing entries `>= first`).
    Append { first: u64, last: u64 },
    /// The region's log removed.
    Clean,
}

/// The `[first, last]` indexes of `entries` after checking they are
/// contiguous and ascending; `None` for an empty slice.
pub(crate) fn entries_span(region_id: u64, entries: &[Entry]) -> Result<Option<(u64, u64)>> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(None);
    };
    for pair in entries.windows(2) {
        if let [a, b] = pair {
            if a.index.checked_add(1) != Some(b.index) {
                return Err(Error::NonContiguousEntries {
                    region_id,
                    prev: a.index,
                    got: b.index,
                });
            }
        }
    }
    Ok(Some((first.index, last.index)))
}

/// Walks `changes` in order, starting from each region's current span as
/// given by `current`, and fails on the first append that would leave a gap
/// or overwrite compacted entries.
pub(crate) fn check_changes<'a>(
    changes: impl IntoIterator<Item = &'a (u64, SpanChange)>,
    mut current: impl FnMut(u64) -> Option<(u64, u64)>,
) -> Result<()> {
    let mut spans: IdMap<Option<(u64, u64)>> = IdMap::default();
    for &(region_id, change) in changes {
        let span = spans.entry(region_id).or_insert_with(|| current(region_id));
        *span = match change {
            SpanChange::Clean => None,
            SpanChange::Append { first, last } => match *span {
                None => Some((first, last)),
                Some((cur_first, cur_last)) => {
                    if first < cur_first {
                        return Err(Error::OverwriteCompacted {
                            region_id,
                            first_index: cur_first,
                            first_new: first,
                        });
                    }
                    if first > cur_last.saturating_add(1) {
                        return Err(Error::LogGap {
                            region_id,
                            last_index: cur_last,
                            first_new: first,
                        });
                    }
                    Some((cur_first, last))
                }
            },
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(indexes: &[u64]) -> Vec<Entry> {
        indexes
            .iter()
            .map(|&index| Entry {
                index,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn span_of_contiguous_entries() {
        assert_eq!(entries_span(1, &[]).unwrap(), None);
        assert_eq!(entries_span(1, &entries(&[4, 5, 6])).unwrap(), Some((4, 6)));
        assert!(matches!(
            entries_span(1, &entries(&[4, 6])),
            Err(Error::NonContiguousEntries {
                prev: 4,
                got: 6,
                ..
            })
        ));
        assert!(entries_span(1, &entries(&[5, 4])).is_err());
    }

    #[test]
    fn appends_must_touch_the_existing_span() {
        let cur = |_| Some((5, 10));
        let ok = [
            (
                1,
                SpanChange::Append {
                    first: 11,
                    last: 12,
                },
            ),
            (
                1,
                SpanChange::Append {
                    first: 13,
                    last: 13,
                },
            ),
            (1, SpanChange::Append { first: 5, last: 6 }),
        ];
        check_changes(&ok, cur).unwrap();
        let gap = [(
            1,
            SpanChange::Append {
                first: 12,
                last: 12,
            },
        )];
        assert!(matches!(
            check_changes(&gap, cur),
            Err(Error::LogGap { .. })
        ));
        let old = [(1, SpanChange::Append { first: 4, last: 12 })];
        assert!(matches!(
            check_changes(&old, cur),
            Err(Error::OverwriteCompacted { .. })
        ));
    }

    #[test]
    fn clean_allows_an_append_anywhere() {
        let changes = [
            (1, SpanChange::Clean),
            (
                1,
                SpanChange::Append {
                    first: 100,
                    last: 100,
                },
            ),
            (2, SpanChange::Append { first: 7, last: 7 }),
        ];
        check_changes(&changes, |id| if id == 1 { Some((5, 10)) } else { None }).unwrap();
    }
}
