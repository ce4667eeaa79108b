//! `kvctl`: a command-line client of a multi-raft cluster. See
//! `kvctl --help`.
//!
//! Exit codes: 0 on success; 1 when `get` finds no value, and when `cas` or
//! `delete-if-equal` does not write (the key's current value is printed);
//! 2 on any error (with a one-line message on stderr).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use client::grpc::{AsyncClient, GrpcOptions};
use client::{CasOutcome, ClientOptions, ReadMode};

#[derive(Parser)]
#[command(
    name = "kvctl",
    version,
    about = "Reads and writes a multi-raft cluster over gRPC."
)]
struct Cli {
    /// gRPC addresses of some of the cluster's stores, HOST:PORT,HOST:PORT,...
    #[arg(long, value_delimiter = ',', required = true, value_name = "LIST")]
    endpoints: Vec<String>,
    /// Deadline of the command in milliseconds, retries included.
    #[arg(long, default_value_t = 20_000, value_name = "MS")]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

/// How a read is served (every mode is linearizable).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Through the raft log, like a write.
    Log,
    /// By the leader, after a heartbeat round confirms its leadership.
    ReadIndex,
    /// By the leader under its lease (falls back to read-index).
    Lease,
    /// By any replica, once it has caught up with the leader's commit index.
    Follower,
}

impl From<Mode> for ReadMode {
    fn from(m: Mode) -> ReadMode {
        match m {
            Mode::Log => ReadMode::Log,
            Mode::ReadIndex => ReadMode::ReadIndex,
            Mode::Lease => ReadMode::Lease,
            Mode::Follower => ReadMode::Follower,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Writes VALUE under KEY.
    Put { key: String, value: String },
    /// Prints the value of KEY and a newline; exits 1 if KEY has none.
    Get {
        key: String,
        /// How the read is served.
        #[arg(long, value_enum, default_value = "log")]
        read_mode: Mode,
    },
    /// Removes KEY.
    Delete { key: String },
    /// Writes NEW under KEY if KEY holds EXPECTED (with --absent: if KEY has
    /// no value; then give KEY NEW only). Exits 0 when it wrote, 1 when not
    /// (printing KEY's current value and a newline; nothing when KEY has
    /// none), 2 on an error.
    #[command(
        override_usage = "kvctl --endpoints LIST cas KEY EXPECTED NEW\n       kvctl --endpoints LIST cas --absent KEY NEW"
    )]
    Cas {
        /// KEY EXPECTED NEW, or KEY NEW with --absent.
        #[arg(num_args = 2..=3, value_name = "ARGS", required = true)]
        args: Vec<String>,
        /// Swap only if KEY has no value.
        #[arg(long)]
        absent: bool,
    },
    /// Removes KEY if it holds EXPECTED. Exit codes as for cas.
    DeleteIfEqual { key: String, expected: String },
    /// Prints KEY, a tab and VALUE for every key in [START, END) ("" = unbounded).
    Scan {
        start: String,
        end: String,
        /// Most pairs to print (0 = all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// How each region's part is read.
        #[arg(long, value_enum, default_value = "log")]
        read_mode: Mode,
    },
    /// Prints every region: id, key range, epoch, peers' stores, leader.
    Regions,
    /// Prints every store of the cluster as the first endpoint that answers
    /// knows them: id and address.
    Stores,
    /// Moves REGION's replica on store FROM to store TO (a learner filled by
    /// a snapshot, then a joint change, then the old replica's removal;
    /// leadership is handed over first if FROM leads the region) and prints
    /// the region's stores afterwards.
    MoveReplica {
        region: u64,
        from: u64,
        to: u64,
        /// Id of the new peer: it must never have been used in the cluster
        /// (a removed peer's id included).
        #[arg(long, value_name = "ID")]
        peer_id: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let timeout = Duration::from_millis(cli.timeout_ms);
    let opts = ClientOptions {
        timeout,
        attempt_timeout: timeout.min(ClientOptions::default().attempt_timeout),
        ..ClientOptions::default()
    };
    let grpc = GrpcOptions {
        connect_timeout: timeout.min(GrpcOptions::default().connect_timeout),
        ..GrpcOptions::default()
    };
    rt.block_on(async move {
        let kv = match AsyncClient::connect(&cli.endpoints, opts, grpc).await {
            Ok(kv) => kv,
            Err(e) => return fail(e.to_string()),
        };
        let mut out = std::io::stdout().lock();
        let result = match cli.command {
            Command::Put { key, value } => kv
                .put(key.as_bytes(), value.as_bytes())
                .await
                .map(|()| None),
            Command::Delete { key } => kv.delete(key.as_bytes()).await.map(|()| None),
            Command::Get { key, read_mode } => {
                match kv.get_with(key.as_bytes(), read_mode.into()).await {
                    Ok(Some(v)) => {
                        let _ = out.write_all(&v).and_then(|()| out.write_all(b"\n"));
                        Ok(None)
                    }
                    Ok(None) => Ok(Some(format!("{key}: not found"))),
                    Err(e) => Err(e),
                }
            }
            Command::Cas { args, absent } => {
                let (key, expected, new) = match (absent, args.as_slice()) {
                    (false, [k, e, n]) => (k, Some(e.as_bytes()), n),
                    (true, [k, n]) => (k, None, n),
                    (false, _) => return fail("cas takes KEY EXPECTED NEW".to_owned()),
                    (true, _) => return fail("cas --absent takes KEY NEW".to_owned()),
                };
                kv.compare_and_swap(key.as_bytes(), expected, new.as_bytes())
                    .await
                    .map(|outcome| not_written(&mut out, key, outcome))
            }
            Command::DeleteIfEqual { key, expected } => kv
                .delete_if_equal(key.as_bytes(), expected.as_bytes())
                .await
                .map(|outcome| not_written(&mut out, &key, outcome)),
            Command::MoveReplica {
                region,
                from,
                to,
                peer_id,
            } => move_replica(&kv, region, from, to, peer_id)
                .await
                .map(|stores| {
                    let _ = writeln!(out, "{stores}");
                    None
                }),
            Command::Stores => {
                // As the first endpoint that answered knows them.
                let _ = writeln!(out, "id\taddress");
                for (id, addr) in kv.backend().stores() {
                    let _ = writeln!(out, "{id}\t{addr}");
                }
                Ok(None)
            }
            Command::Scan {
                start,
                end,
                limit,
                read_mode,
            } => kv
                .scan_with(start.as_bytes(), end.as_bytes(), limit, read_mode.into())
                .await
                .map(|pairs| {
                    for (k, v) in pairs {
                        let _ = out
                            .write_all(&k)
                            .and_then(|()| out.write_all(b"\t"))
                            .and_then(|()| out.write_all(&v))
                            .and_then(|()| out.write_all(b"\n"));
                    }
                    None
                }),
            Command::Regions => kv.regions().await.map(|regions| {
                let _ = writeln!(out, "id\tstart\tend\tconf_ver\tversion\tstores\tleader");
                for info in regions {
                    let r = info.get_region();
                    let stores: Vec<String> = r
                        .get_peers()
                        .iter()
                        .map(|p| p.get_store_id().to_string())
                        .collect();
                    let leader = if info.has_leader() {
                        info.get_leader().get_store_id().to_string()
                    } else {
                        "-".to_owned()
                    };
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r.get_id(),
                        printable(r.get_start_key()),
                        printable(r.get_end_key()),
                        r.get_region_epoch().get_conf_ver(),
                        r.get_region_epoch().get_version(),
                        stores.join(","),
                        leader
                    );
                }
                None
            }),
        };
        let _ = out.flush();
        match result {
            Ok(None) => ExitCode::SUCCESS,
            Ok(Some(not_found)) => {
                eprintln!("kvctl: {not_found}");
                ExitCode::from(1)
            }
            Err(e) => fail(e.to_string()),
        }
    })
}

/// `kvctl move-replica`: runs the blocking move on a thread of its own
/// (it drives this runtime's I/O through its handle while `main` waits);
/// the region's stores afterwards, comma-separated.
async fn move_replica(
    kv: &AsyncClient,
    region_id: u64,
    from: u64,
    to: u64,
    peer_id: u64,
) -> client::Result<String> {
    let bad = client::ClientError::Command;
    if peer_id == 0 {
        return Err(bad("--peer-id must not be 0".to_owned()));
    }
    let info = kv
        .regions()
        .await?
        .into_iter()
        .find(|i| i.get_region().get_id() == region_id)
        .ok_or_else(|| bad(format!("no region {region_id}")))?;
    let region = info.get_region().clone();
    let transfer_to = if info.has_leader() && info.get_leader().get_store_id() == from {
        region
            .get_peers()
            .iter()
            .map(|p| p.get_store_id())
            .find(|&s| s != from && s != to)
    } else {
        None
    };
    let backend = kv.backend().clone();
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let moved =
            node::join::move_replica(&backend, &handle, &region, from, to, peer_id, transfer_to);
        let _ = tx.send(moved);
    });
    let moved = rx
        .await
        .map_err(|_| bad("the move stopped without an answer".to_owned()))?
        .map_err(|e| bad(e.to_string()))?;
    let stores: Vec<String> = moved
        .get_peers()
        .iter()
        .map(|p| p.get_store_id().to_string())
        .collect();
    Ok(stores.join(","))
}

/// For a conditional write: `None` when it wrote; otherwise prints the
/// key's current value (nothing when it has none) and says why it did not.
fn not_written(out: &mut impl Write, key: &str, outcome: CasOutcome) -> Option<String> {
    if outcome.succeeded {
        return None;
    }
    Some(match outcome.previous {
        Some(v) => {
            let _ = out.write_all(&v).and_then(|()| out.write_all(b"\n"));
            format!("{key}: not written, it holds another value")
        }
        None => format!("{key}: not written, it has no value"),
    })
}

/// A key as text: UTF-8 as is, anything else in hex (`0x...`); empty as
/// `""` (unbounded).
fn printable(key: &[u8]) -> String {
    if key.is_empty() {
        return "\"\"".to_owned();
    }
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_owned(),
        _ => format!(
            "0x{}",
            key.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("kvctl: {}", message.replace('\n', " "));
    ExitCode::from(2)
}
