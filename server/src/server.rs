//! [`Server`]: serves a [`StoreService`] on a listening socket.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use engine::KvEngine;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::config::Config;
use crate::service::StoreService;
use crate::{Error, Result};

/// A running gRPC server: HTTP/2 on one socket, on a tokio runtime.
///
/// [`Server::stop`] stops accepting connections, ends the raft streams of
/// other stores (they never end by themselves), lets client requests in
/// progress finish for a grace period, then closes what is left.
pub struct Server {
    addr: SocketAddr,
    /// Ends the raft streams of the service being served.
    close_streams: Box<dyn Fn() + Send + Sync>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free one; see [`Server::local_addr`]).
    /// Binding first, before the store starts, turns "address in use" into
    /// an error at start-up rather than a store that nobody can reach.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] when the address cannot be bound.
    pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
        TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })
    }

    /// Serves `service` on `listener` with tasks on `handle`'s runtime.
    ///
    /// # Errors
    ///
    /// An I/O error preparing the socket.
    pub fn start<EK: KvEngine>(
        handle: &Handle,
        listener: TcpListener,
        service: StoreService<EK>,
        cfg: &Config,
    ) -> Result<Server> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let incoming = {
            let _entered = handle.enter();
            TcpIncoming::from(tokio::net::TcpListener::from_std(listener)?).with_nodelay(Some(true))
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let raft_streams = service.clone();
        let close_streams = Box::new(move || raft_streams.close_streams());
        let serve = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_millis(cfg.keepalive_interval_ms)))
            .http2_keepalive_timeout(Some(Duration::from_millis(cfg.keepalive_timeout_ms)))
            .max_concurrent_streams(Some(cfg.max_concurrent_streams))
            .serve_with_incoming_shutdown(service, incoming, async {
                let _ = stop_rx.await;
            });
        let task = handle.spawn(serve);
        Ok(Server {
            addr,
            close_streams,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server: no new connections; requests in progress get
    /// `grace` to finish, then every connection is closed.
    ///
    /// # Errors
    ///
    /// The server's own failure, if it had failed before.
    pub async fn stop(mut self, grace: Duration) -> Result<()> {
        self.stop_inner(grace).await
    }

    async fn stop_inner(&mut self, grace: Duration) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (self.close_streams)();
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(grace, &mut task).await {
            Ok(Ok(result)) => result.map_err(Error::from),
            // The task panicked or was cancelled: nothing is left to stop.
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (self.close_streams)();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
