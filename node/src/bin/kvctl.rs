//! `kvctl`: a command-line client of a multi-raft cluster. See
//! `kvctl --help`.
//!
//! Exit codes: 0 on success, 1 when `get` finds no value, 2 on any error
//! (with a one-line message on stderr).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use client::grpc::{AsyncClient, GrpcOptions};
use client::ClientOptions;

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

#[derive(Subcommand)]
enum Command {
    /// Writes VALUE under KEY.
    Put { key: String, value: String },
    /// Prints the value of KEY and a newline; exits 1 if KEY has none.
    Get { key: String },
    /// Removes KEY.
    Delete { key: String },
    /// Prints KEY, a tab and VALUE for every key in [START, END) ("" = unbounded).
    Scan {
        start: String,
        end: String,
        /// Most pairs to print (0 = all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Prints every region: id, key range, epoch, peers' stores, leader.
    Regions,
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
            Command::Get { key } => match kv.get(key.as_bytes()).await {
                Ok(Some(v)) => {
                    let _ = out.write_all(&v).and_then(|()| out.write_all(b"\n"));
                    Ok(None)
                }
                Ok(None) => Ok(Some(format!("{key}: not found"))),
                Err(e) => Err(e),
            },
            Command::Scan { start, end, limit } => kv
                .scan(start.as_bytes(), end.as_bytes(), limit)
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
