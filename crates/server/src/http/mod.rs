//! The HTTP layer (`--http ADDR`, alias `--metrics ADDR`): axum on hyper, HTTP/1.1, over
//! plain TCP or TLS (`--metrics-tls-cert`/`--metrics-tls-key`). It serves `/metrics` and
//! `/healthz` (see `crate::metrics`) and the dashboard (`pages`), whose numbers come from
//! the history sampler (`history`: the engine lock is taken once a second, to copy
//! numbers) and whose actions and job views go through the protocol on an in-process
//! connection (`proto`): the same code path, counters, log records and commit
//! watermark as any client's command.

mod auth;
mod history;
mod pages;
mod proto;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::Shared;

/// How long a client may take to send a request's headers (and, over TLS, its
/// handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the dashboard is served on this address, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dashboard {
    On,
    /// Only /metrics and /healthz: the dashboard would be reachable from other hosts
    /// without TLS or a login.
    Off(String),
}

/// Decides whether the dashboard may be served on `addr`: on loopback always; on any
/// other address only over TLS or with logins (users with tokens).
pub fn dashboard_for(addr: &SocketAddr, tls: bool, logins: bool) -> Dashboard {
    if addr.ip().is_loopback() || tls || logins {
        Dashboard::On
    } else {
        Dashboard::Off(format!(
            "the dashboard is off on {addr}: not loopback, and neither TLS \
             (--metrics-tls-cert/--metrics-tls-key) nor logins ([[user]] tokens) are configured"
        ))
    }
}

/// What every handler shares.
pub(crate) struct Web {
    pub(crate) shared: Arc<Shared>,
    tube_cap: usize,
    pub(crate) tls: bool,
    pub(crate) dashboard: Dashboard,
    pub(crate) sessions: auth::Sessions,
    pub(crate) history: history::History,
}

type Ctx = State<Arc<Web>>;

/// Serves HTTP on `listener` until the process exits.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, tube_cap: usize) {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let tls = shared.security.metrics_over_tls();
    let logins = shared.security.users().has_tokens();
    // `--metrics` serves what it always has; `--http` adds the dashboard (main refuses an
    // address where it would be exposed).
    let dashboard = if shared.config.http {
        dashboard_for(&addr, tls, logins)
    } else {
        Dashboard::Off("the dashboard is served with --http".into())
    };
    if let (true, Dashboard::Off(why)) = (shared.config.http, &dashboard) {
        tracing::warn!("{why}; /metrics and /healthz only");
    }
    let web = Arc::new(Web {
        history: history::History::start(shared.clone(), dashboard == Dashboard::On),
        shared,
        tube_cap,
        tls,
        dashboard,
        sessions: auth::Sessions::default(),
    });
    let app = router(web.clone());
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                tracing::warn!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let app = app.clone();
        let slot = web.shared.security.metrics_tls.clone();
        tokio::spawn(async move {
            match slot {
                Some(slot) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(slot.get());
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(sock)).await
                    {
                        connection(tls, app).await;
                    }
                }
                None => connection(sock, app).await,
            }
        });
    }
}

/// One HTTP/1.1 connection.
async fn connection<I>(io: I, app: Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        // Header names as /metrics always wrote them (Content-Type, not content-type).
        .title_case_headers(true)
        .serve_connection(
            TokioIo::new(WwwAuthenticate(io)),
            TowerToHyperService::new(app),
        )
        .await;
}

/// Writes `WWW-Authenticate` as /metrics always spelled it (title case gives
/// `Www-Authenticate`; some scrapers' checks are case-sensitive). Only a response head
/// is touched (a write that starts with the status line), and the fix keeps its length.
struct WwwAuthenticate<I>(I);

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WwwAuthenticate<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WwwAuthenticate<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        const TITLE: &[u8] = b"\r\nWww-Authenticate:";
        let head = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .filter(|_| buf.starts_with(b"HTTP/1."))
            .unwrap_or(0);
        match buf[..head].windows(TITLE.len()).position(|w| w == TITLE) {
            Some(at) => {
                let mut fixed = buf.to_vec();
                fixed[at + 2..at + 5].copy_from_slice(b"WWW");
                std::pin::Pin::new(&mut self.0).poll_write(cx, &fixed)
            }
            None => std::pin::Pin::new(&mut self.0).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn router(web: Arc<Web>) -> Router {
    let mut r = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    if web.dashboard == Dashboard::On {
        r = r.merge(pages::routes());
    }
    r.fallback(not_found).with_state(web)
}

/// A plain-text response that closes the connection (what /metrics always sent).
fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<axum::body::Body> {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn not_found() -> impl IntoResponse {
    text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into())
}

async fn healthz() -> impl IntoResponse {
    text(StatusCode::OK, "text/plain", "ok\n".into())
}

/// `/metrics`, with `Authorization: Bearer <token>` when `--metrics-token-sha256` is set.
async fn metrics(State(web): Ctx, headers: HeaderMap) -> impl IntoResponse {
    if !bearer_ok(&headers, &web.shared) {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "unauthorized\n".into(),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"sproutd\""),
        );
        return r;
    }
    let snap = crate::metrics::snapshot(&web.shared);
    text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        crate::metrics::render(&snap, web.tube_cap),
    )
}

/// Whether the request carries the bearer token /metrics wants (if it wants one).
fn bearer_ok(headers: &HeaderMap, shared: &Shared) -> bool {
    let Some(want) = shared.security.metrics_token() else {
        return true;
    };
    headers.get_all(header::AUTHORIZATION).iter().any(|v| {
        let Some((scheme, token)) = v.to_str().unwrap_or("").trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && crate::access::sha256(token.trim().as_bytes()).as_slice() == want.as_ref()
    })
}
