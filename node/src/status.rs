//! The status server: plain HTTP/1.1 on the status address.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | every metric, Prometheus text format |
//! | `GET /status` | JSON: store id, cluster id, address, regions, leaders, hibernated regions, uptime |
//! | `GET /status/regions` | JSON: every region of the store with epoch, peers, leader, whether it hibernates and applied index |
//!
//! Anything else is `404` (`405` for another method on a known path).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::KvEngine;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use raftstore::StoreMeta;
use serde_json::{json, Value};
use slog::{warn, Logger};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// What the status pages show, read on every request.
pub struct StatusSource<EK: KvEngine> {
    /// The store's id.
    pub store_id: u64,
    /// The cluster's id (from the data dir's record).
    pub cluster_id: u64,
    /// The store's gRPC address, as the other stores know it.
    pub address: String,
    /// Leadership of the store's regions.
    pub meta: Arc<StoreMeta>,
    /// The store's awake (ticked) regions; the others hibernate.
    pub awake: Arc<raftstore::AwakeRegions>,
    /// The store's KV engine (region metadata and apply states).
    pub kv: EK,
    /// The metrics recorder.
    pub metrics: PrometheusHandle,
    /// When the node started.
    pub started: Instant,
}

/// The pages of the status server, independent of engine types.
trait Pages: Send + Sync + 'static {
    fn metrics(&self) -> String;
    fn status(&self) -> Value;
    fn regions(&self) -> Value;
}

impl<EK: KvEngine> Pages for StatusSource<EK> {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn status(&self) -> Value {
        let regions = self.local_regions().map(|r| r.len());
        json!({
            "store_id": self.store_id,
            "cluster_id": self.cluster_id,
            "address": self.address,
            "regions": regions.as_ref().ok(),
            "leaders": self.meta.leader_regions().len(),
            "hibernated": regions
                .as_ref()
                .ok()
                .map(|n| n.saturating_sub(self.awake.len())),
            "uptime_secs": self.started.elapsed().as_secs_f64(),
            "version": env!("CARGO_PKG_VERSION"),
            "error": regions.err(),
        })
    }

    fn regions(&self) -> Value {
        let regions = match self.local_regions() {
            Ok(r) => r,
            Err(e) => return json!({ "error": e }),
        };
        let list: Vec<Value> = regions
            .iter()
            .map(|r| {
                let id = r.get_id();
                let leader = self.meta.leader_info(id);
                let leader_store = leader
                    .map(|l| l.leader_store_id)
                    .filter(|s| *s != 0);
                let applied = self
                    .kv
                    .get_apply_state(id)
                    .ok()
                    .flatten()
                    .map(|s| s.get_applied_index());
                json!({
                    "id": id,
                    "start_key": hex(r.get_start_key()),
                    "end_key": hex(r.get_end_key()),
                    "conf_ver": r.get_region_epoch().get_conf_ver(),
                    "version": r.get_region_epoch().get_version(),
                    "peer_stores": r.get_peers().iter().map(|p| p.get_store_id()).collect::<Vec<_>>(),
                    "leader_store": leader_store,
                    "is_leader": leader.map(|l| l.is_leader).unwrap_or(false),
                    "term": leader.map(|l| l.term),
                    "hibernated": !self.awake.contains(id),
                    "applied_index": applied,
                })
            })
            .collect();
        json!({ "store_id": self.store_id, "regions": list })
    }
}

impl<EK: KvEngine> StatusSource<EK> {
    fn local_regions(&self) -> std::result::Result<Vec<kvproto_lite::metapb::Region>, String> {
        server::store_regions(&self.kv, self.store_id)
            .map_err(|e| format!("cannot read region states: {e}"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET path` on the status server at `addr` (`host:port`): the body of a
/// `200` answer. A small blocking client for scripts, tests and
/// benchmarks.
///
/// # Errors
///
/// The connection failed or timed out (5 s), or the answer was not `200`.
pub fn fetch(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    match resp.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        Some((head, _)) => Err(std::io::Error::other(format!(
            "GET {path}: {}",
            head.lines().next().unwrap_or_default()
        ))),
        None => Err(std::io::Error::other(format!("GET {path}: no HTTP answer"))),
    }
}

/// A running status server.
pub struct StatusServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl StatusServer {
    /// Serves `source` on `listener` with tasks on `handle`'s runtime.
    ///
    /// # Errors
    ///
    /// An I/O error preparing the socket.
    pub fn start<EK: KvEngine>(
        handle: &Handle,
        listener: TcpListener,
        source: StatusSource<EK>,
        logger: &Logger,
    ) -> Result<StatusServer> {
        let addr = listener.local_addr().map_err(Error::io("status address"))?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("status socket"))?;
        let listener = {
            let _entered = handle.enter();
            tokio::net::TcpListener::from_std(listener).map_err(Error::io("status socket"))?
        };
        let (stop, stopped) = oneshot::channel();
        let pages: Arc<dyn Pages> = Arc::new(source);
        let task = handle.spawn(serve(listener, pages, stopped, logger.clone()));
        Ok(StatusServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections (connections in progress are closed by
    /// the runtime's shutdown).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    pages: Arc<dyn Pages>,
    mut stopped: oneshot::Receiver<()>,
    logger: Logger,
) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(logger, "status server: accept failed"; "error" => %e);
                // For example out of file descriptors: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let pages = pages.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let pages = pages.clone();
                async move { Ok::<_, Infallible>(respond(pages, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(pages: Arc<dyn Pages>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let page = match req.uri().path() {
        "/metrics" => Page::Metrics,
        "/status" => Page::Status,
        "/status/regions" => Page::Regions,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "not found: try /status, /status/regions or /metrics\n",
            )
        }
    };
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    // The pages read the engines: off the async workers.
    let body = tokio::task::spawn_blocking(move || match page {
        Page::Metrics => (pages.metrics(), "text/plain; version=0.0.4"),
        Page::Status => (pages.status().to_string() + "\n", "application/json"),
        Page::Regions => (pages.regions().to_string() + "\n", "application/json"),
    })
    .await;
    match body {
        Ok((body, content_type)) => {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            if let Ok(v) = content_type.parse() {
                resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
            }
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

#[derive(Clone, Copy)]
enum Page {
    Metrics,
    Status,
    Regions,
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp
}
