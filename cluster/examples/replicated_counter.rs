//! A replicated counter built on user commands.
//!
//! The application registers one deterministic handler, `counter.add`, on
//! every store. Its input is a key and a signed amount; it reads the key's
//! current count (8 bytes, big-endian; absent = 0), adds the amount,
//! refuses to go below zero (an error *value*: nothing is written and the
//! client gets the message), writes the new count through the round's
//! write batch and returns it. Because the client sends each command with
//! its session (client id + sequence), a retried increment is counted
//! once.
//!
//! Run it with `cargo run -p cluster --example replicated_counter`; its
//! test runs with `cargo test -p cluster --example replicated_counter`
//! (and with `cargo test -p cluster`).

use std::time::Duration;

use cluster::Cluster;
use raftstore::{CommandHandlers, Config, KeyAccess};

/// The handler's name, the same on every store.
const ADD: &str = "counter.add";

/// Encodes the input of `counter.add`: amount (i64 BE) then the key.
fn add_input(key: &[u8], amount: i64) -> Vec<u8> {
    let mut input = amount.to_be_bytes().to_vec();
    input.extend_from_slice(key);
    input
}

/// The deterministic handler: its result depends only on its input and the
/// key it reads.
fn counter_add(keys: &mut KeyAccess<'_>, input: &[u8]) -> Result<Vec<u8>, String> {
    if input.len() < 8 {
        return Err(format!("input of {} bytes, need 8 + key", input.len()));
    }
    let (amount, key) = input.split_at(8);
    let amount = i64::from_be_bytes(amount.try_into().map_err(|_| "bad amount")?);
    let current = match keys.get(key)? {
        None => 0u64,
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| format!("stored count has {} bytes, not 8", v.len()))?,
        ),
    };
    let next = i128::from(current) + i128::from(amount);
    let next =
        u64::try_from(next).map_err(|_| format!("count {current} + {amount} out of range"))?;
    keys.put(key, &next.to_be_bytes())?;
    Ok(next.to_be_bytes().to_vec())
}

/// The handlers every store registers.
fn handlers() -> CommandHandlers {
    let mut h = CommandHandlers::default();
    h.register(ADD, counter_add);
    h
}

/// Starts a 3-store cluster, counts, and returns the final count of
/// `visits` and the error a too-large decrement got.
fn run() -> Result<(u64, String), Box<dyn std::error::Error>> {
    let mut cluster = Cluster::memory(3, 2, Config::default())?;
    cluster.set_command_handlers(handlers());
    cluster.start()?;
    cluster.wait_for_leaders(Duration::from_secs(30))?;
    let mut client = cluster.client();
    let key = b"visits".as_slice();
    for _ in 0..10 {
        client.user_command(key, ADD, &add_input(key, 3))?;
    }
    let refused = match client.user_command(key, ADD, &add_input(key, -1000)) {
        Err(client::ClientError::Command(msg)) => msg,
        other => return Err(format!("expected a refused decrement, got {other:?}").into()),
    };
    let out = client.user_command(key, ADD, &add_input(key, -5))?;
    let last = u64::from_be_bytes(out.as_slice().try_into()?);
    cluster.shutdown();
    Ok((last, refused))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (count, refused) = run()?;
    println!("visits = {count}");
    println!("decrement by 1000 refused: {refused}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_counts_and_refuses_to_go_negative() {
        let (count, refused) = run().unwrap();
        assert_eq!(count, 25, "10 x +3 then -5");
        assert!(refused.contains("out of range"), "{refused}");
    }
}
