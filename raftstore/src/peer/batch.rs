//! Batching the commands of one poll round: consecutive commands with the
//! same header are merged into one `RaftCmdRequest` per raft entry, so a
//! round's commands cost one entry to replicate, persist, decode and apply,
//! and each command still gets its own answer.

use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};

use crate::msg::Callback;

/// A command accepted this round and waiting to be proposed: the request,
/// its encoded size, its callback.
pub(super) type BatchedCommand = (RaftCmdRequest, u64, Callback);

/// Most bytes of client commands merged into one raft entry (a command
/// larger than this gets an entry of its own).
pub(super) const MAX_MERGED_ENTRY_BYTES: u64 = 512 * 1024;

/// A merged command being built: the request, its encoded bytes so far,
/// and (requests, callback) of each original command.
type MergeGroup = (RaftCmdRequest, u64, Vec<(usize, Callback)>);

/// Merges consecutive commands with identical headers and no client
/// session into one
/// `RaftCmdRequest` per entry (at most `limit` encoded bytes each), so a
/// round's commands cost one entry to replicate, persist, decode and apply.
/// The merged command's callback hands each original callback its own
/// slice of the responses, or a copy of the error: apply executes a merged
/// command atomically, which each original command's checks already
/// passed alone (same header, keys checked against the region). A session
/// command is never merged: apply checks its sequence once per entry, and
/// two attempts of one command (identical headers) must stay two entries so
/// the second is recognised as a repeat.
pub(super) fn merge_commands(
    batch: Vec<BatchedCommand>,
    limit: u64,
) -> Vec<(RaftCmdRequest, Callback)> {
    let mut out: Vec<(RaftCmdRequest, Callback)> = Vec::new();
    let mut group: Option<MergeGroup> = None;
    let finish = |g: MergeGroup| -> (RaftCmdRequest, Callback) {
        let (request, _, mut parts) = g;
        if parts.len() == 1 {
            if let Some((_, cb)) = parts.pop() {
                return (request, cb);
            }
        }
        (request, split_callback(parts))
    };
    for (mut request, size, cb) in batch {
        let fits = group.as_ref().is_some_and(|(g, bytes, _)| {
            bytes + size <= limit
                && g.get_header() == request.get_header()
                && request.get_header().get_client_id() == 0
        });
        if fits {
            if let Some((g, bytes, parts)) = group.as_mut() {
                let n = request.get_requests().len();
                g.mut_requests().extend(request.take_requests());
                *bytes += size;
                parts.push((n, cb));
            }
        } else {
            if let Some(g) = group.take() {
                out.push(finish(g));
            }
            let n = request.get_requests().len();
            group = Some((request, size, vec![(n, cb)]));
        }
    }
    if let Some(g) = group.take() {
        out.push(finish(g));
    }
    out
}

/// A callback for a merged command: answers each part with its own
/// responses (in order), or every part with the error.
fn split_callback(parts: Vec<(usize, Callback)>) -> Callback {
    Callback::new(move |mut resp: RaftCmdResponse| {
        let total: usize = parts.iter().map(|(n, _)| n).sum();
        let header = resp.take_header();
        if header.has_error() || resp.get_responses().len() != total {
            let mut err = header.get_error().clone();
            if !header.has_error() {
                err.set_message(format!(
                    "merged command answered with {} responses for {total} requests",
                    resp.get_responses().len()
                ));
            }
            for (_, cb) in parts {
                cb.invoke_with_error(err.clone(), header.get_current_term());
            }
            return;
        }
        let mut responses = resp.take_responses().into_iter();
        for (n, cb) in parts {
            let mut r = RaftCmdResponse::default();
            r.set_header(header.clone());
            r.set_responses(responses.by_ref().take(n).collect());
            cb.invoke(r);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvproto_lite::raft_cmdpb::CmdType;
    use kvproto_lite::util;
    use protobuf::Message as _;

    fn put_command(
        key: &[u8],
        header_region: u64,
    ) -> (
        RaftCmdRequest,
        u64,
        Callback,
        std::sync::mpsc::Receiver<RaftCmdResponse>,
    ) {
        let mut req = RaftCmdRequest::default();
        req.mut_header().set_region_id(header_region);
        let mut r = kvproto_lite::raft_cmdpb::Request::default();
        r.set_cmd_type(CmdType::Put);
        r.mut_put().set_key(key.to_vec());
        r.mut_put().set_value(b"v".to_vec());
        req.mut_requests().push(r);
        let size = u64::from(req.compute_size());
        let (tx, rx) = std::sync::mpsc::channel();
        let cb = Callback::new(move |resp| {
            let _ = tx.send(resp);
        });
        (req, size, cb, rx)
    }

    #[test]
    fn commands_with_one_header_merge_and_each_gets_its_own_response() {
        let cmds: Vec<_> = (0..3u8).map(|i| put_command(&[i], 1)).collect();
        let mut rxs = Vec::new();
        let batch = cmds
            .into_iter()
            .map(|(req, size, cb, rx)| {
                rxs.push(rx);
                (req, size, cb)
            })
            .collect();
        let mut merged = merge_commands(batch, MAX_MERGED_ENTRY_BYTES);
        assert_eq!(merged.len(), 1);
        let (req, cb) = merged.pop().unwrap();
        let keys: Vec<Vec<u8>> = req
            .get_requests()
            .iter()
            .map(|r| r.get_put().get_key().to_vec())
            .collect();
        assert_eq!(keys, vec![vec![0], vec![1], vec![2]]);
        let mut resp = RaftCmdResponse::default();
        resp.mut_header().set_current_term(7);
        for _ in 0..3 {
            let mut r = kvproto_lite::raft_cmdpb::Response::default();
            r.set_cmd_type(CmdType::Put);
            resp.mut_responses().push(r);
        }
        cb.invoke(resp);
        for rx in rxs {
            let r = rx.try_recv().unwrap();
            assert!(!r.get_header().has_error());
            assert_eq!(r.get_header().get_current_term(), 7);
            assert_eq!(r.get_responses().len(), 1);
        }
    }

    #[test]
    fn an_error_for_a_merged_command_reaches_every_part() {
        let (a, sa, ca, ra) = put_command(b"a", 1);
        let (b, sb, cb, rb) = put_command(b"b", 1);
        let (req, merged_cb) =
            merge_commands(vec![(a, sa, ca), (b, sb, cb)], MAX_MERGED_ENTRY_BYTES)
                .pop()
                .unwrap();
        assert_eq!(req.get_requests().len(), 2);
        merged_cb.invoke_with_error(util::new_stale_command(), 3);
        assert!(ra
            .try_recv()
            .unwrap()
            .get_header()
            .get_error()
            .has_stale_command());
        assert!(rb
            .try_recv()
            .unwrap()
            .get_header()
            .get_error()
            .has_stale_command());
    }

    #[test]
    fn a_dropped_merged_callback_answers_every_part() {
        let (a, sa, ca, ra) = put_command(b"a", 1);
        let (b, sb, cb, rb) = put_command(b"b", 1);
        drop(merge_commands(
            vec![(a, sa, ca), (b, sb, cb)],
            MAX_MERGED_ENTRY_BYTES,
        ));
        assert!(ra.try_recv().unwrap().get_header().has_error());
        assert!(rb.try_recv().unwrap().get_header().has_error());
    }

    #[test]
    fn different_headers_and_the_size_limit_start_new_entries() {
        let (a, sa, ca, _ra) = put_command(b"a", 1);
        let (b, sb, cb, _rb) = put_command(b"b", 2);
        let (c, sc, cc, _rc) = put_command(b"c", 2);
        let merged = merge_commands(
            vec![(a, sa, ca), (b, sb, cb), (c, sc, cc)],
            MAX_MERGED_ENTRY_BYTES,
        );
        assert_eq!(merged.len(), 2);
        let (d, sd, cd, _rd) = put_command(b"d", 1);
        let (e, se, ce, _re) = put_command(b"e", 1);
        let limit = sd + se - 1;
        assert_eq!(
            merge_commands(vec![(d, sd, cd), (e, se, ce)], limit).len(),
            2
        );
    }
}
