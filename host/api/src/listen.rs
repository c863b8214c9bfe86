//! Serving the API on a network: TLS (rustls), timeouts and connection
//! limits, so a client that never finishes its headers or its body, or a
//! flood of connections, cannot take the server down.
//!
//! - Request headers must arrive within [`Limits::header_timeout`]; a
//!   request body must keep arriving (a frame at least every
//!   [`Limits::body_timeout`]); a TLS handshake must finish within
//!   [`Limits::handshake_timeout`].
//! - At most [`Limits::max_connections`] connections at once (capped below
//!   the process's file limit, which is raised to its hard limit) and
//!   [`Limits::max_per_source`] from one source address; a connection over
//!   a limit is closed at once and counted ([`ConnectionStats`], shown in
//!   `/metrics`).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::{ApiState, router};

/// The listener's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for a request's headers.
    pub header_timeout: Duration,
    /// Time allowed between two frames of a request body.
    pub body_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Connections at once, all sources.
    pub max_connections: usize,
    /// Connections at once from one source address.
    pub max_per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 60_000,
            max_per_source: 2_000,
        }
    }
}

/// Connections now and refused so far.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Open connections.
    pub open: AtomicU64,
    /// Connections closed at once for a limit.
    pub refused: AtomicU64,
    /// The effective cap on open connections.
    pub limit: AtomicU64,
    /// Run event streams being followed (`GET /runs/{id}/events`).
    pub event_streams: AtomicU64,
}

/// Counts one open event stream in [`ConnectionStats::event_streams`]
/// while it lives.
pub(crate) struct StreamGuard(Arc<ConnectionStats>);

impl StreamGuard {
    pub(crate) fn enter(stats: &Arc<ConnectionStats>) -> Self {
        stats.event_streams.fetch_add(1, Ordering::Relaxed);
        Self(stats.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.event_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A server's TLS settings.
pub type TlsConfig = rustls::ServerConfig;

/// A rustls server configuration from PEM files: the certificate chain and
/// its private key.
///
/// # Errors
///
/// A file cannot be read, holds no certificate or key, or the key does not
/// fit the certificate.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the private key does not fit the certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Raises the soft file limit to the hard one; returns the soft limit.
fn raise_file_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        limit.rlim_cur
    }
}

/// Open connections per source address.
#[derive(Default)]
struct Sources(Mutex<HashMap<IpAddr, usize>>);

impl Sources {
    fn enter(&self, ip: IpAddr, max: usize) -> bool {
        let mut map = self.0.lock().expect("sources lock poisoned");
        let n = map.entry(ip).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: IpAddr) {
        let mut map = self.0.lock().expect("sources lock poisoned");
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// Serves the API on `listener` (over TLS with `tls`) within `limits`
/// until `shutdown` resolves; then stops accepting and lets open requests
/// finish for up to ten seconds.
///
/// # Errors
///
/// Accepting fails for a reason other than a connection's own.
pub async fn serve_with(
    listener: TcpListener,
    state: ApiState,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stats = state.connections().clone();
    let files = raise_file_limit();
    let cap = limits
        .max_connections
        .min(files.saturating_sub(256).max(16) as usize);
    stats.limit.store(cap as u64, Ordering::Relaxed);
    let (router, _) = router(state);
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let sources = Arc::new(Sources::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder.http1_only());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors: wait, do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let ip = peer.ip();
        let open = stats.open.load(Ordering::Relaxed) as usize;
        if open >= cap || !sources.enter(ip, limits.max_per_source) {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        stats.open.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let (builder, acceptor, stats, sources) = (
            builder.clone(),
            acceptor.clone(),
            stats.clone(),
            sources.clone(),
        );
        let watcher = graceful.watcher();
        let handshake = limits.handshake_timeout;
        tokio::spawn(async move {
            match acceptor {
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(handshake, acceptor.accept(stream)).await
                    {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                        let _ = watcher.watch(conn.into_owned()).await;
                    }
                }
            }
            sources.leave(ip);
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("requests still open after 10 s; stopping anyway");
        }
    }
    Ok(())
}

/// Errors of one connection that the listener ignores.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
