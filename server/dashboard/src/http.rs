//! The dashboard's HTTP server: the page and its assets, the JSON API and its OpenAPI document.
//!
//! What a client can cost is bounded: at most [`MAX_CONNECTIONS`] connections at once, each closed
//! [`CONNECTION_LIFETIME`] after it opened; at most [`MAX_IN_FLIGHT`] requests at once (more are
//! refused at once with 503, never queued), each given [`REQUEST_TIMEOUT`]; no endpoint reads a
//! request body, and every one answers GET only.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::ParseIntError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Json, Router};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tower::ServiceBuilder;
use utoipa::{OpenApi, ToSchema};

use crate::model::{Device, DeviceHistory, Rollout, Source, SourceError};

/// Connections open at once; the next one waits to be accepted until one closes.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay open (a browser simply opens a new one).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Requests handled at once; one more is answered 503 at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// How long a request may take, the [`Source`]'s read included; past it, 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest device id text an error repeats back.
const ECHO_MAX: usize = 40;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../assets/dashboard.css");
const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

/// Why a request failed: each is answered with its status and `{"error": "<this error's text>"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The `{id}` of `/api/devices/{id}` is not a device id.
    #[error("device id {text:?} is not a number (an unsigned 64-bit integer): {why}")]
    BadDeviceId {
        /// The id as given (its first characters).
        text: String,
        /// Why it does not parse.
        why: ParseIntError,
    },
    /// No device has that id.
    #[error("no device {0} in the fleet")]
    UnknownDevice(u64),
    /// No page or endpoint at that path.
    #[error("no page or endpoint at {0}")]
    NoRoute(String),
    /// A method other than GET (or HEAD).
    #[error("method {0} not allowed: the dashboard answers GET only")]
    Method(Method),
    /// The [`Source`] failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The blocking task that read the [`Source`] panicked or was cancelled.
    #[error("reading the device state failed: {0}")]
    Worker(String),
    /// [`MAX_IN_FLIGHT`] requests are already being handled.
    #[error("busy: {MAX_IN_FLIGHT} requests already in flight, try again")]
    Busy,
    /// The request took longer than [`REQUEST_TIMEOUT`].
    #[error("the request took longer than {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    /// The request stack failed in an unexpected way.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadDeviceId { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnknownDevice(_) | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Busy | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Source(_) | ApiError::Worker(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong, e.g. `no device 7 in the fleet`.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.to_string(),
        };
        (self.status(), no_store(), Json(body)).into_response()
    }
}

/// The API's answers are the fleet as of now: never cached.
fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// The OpenAPI document of the JSON API, generated from the handlers and the types they return.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "rota dashboard",
        description = "The fleet of a rota-server: its devices and rollouts."
    ),
    paths(list_devices, get_device, list_rollouts, openapi_json),
    components(schemas(Device, DeviceHistory, Rollout, ErrorBody))
)]
struct ApiDoc;

struct AppState {
    source: Arc<dyn Source>,
    openapi: String,
}

type Shared = State<Arc<AppState>>;

/// Runs one [`Source`] read on the blocking pool.
async fn read<T, F>(source: &Arc<dyn Source>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Source) -> Result<T, SourceError> + Send + 'static,
{
    let source = Arc::clone(source);
    let answer = tokio::task::spawn_blocking(move || f(&*source))
        .await
        .map_err(|e| ApiError::Worker(e.to_string()))?;
    Ok(answer?)
}

/// Every device of the fleet, each as of its last check-in.
#[utoipa::path(get, path = "/api/devices", responses(
    (status = 200, description = "The devices", body = Vec<Device>),
    (status = 503, description = "Busy or too slow", body = ErrorBody),
    (status = 500, description = "The device state could not be read", body = ErrorBody),
))]
async fn list_devices(State(app): Shared) -> Result<Response, ApiError> {
    let devices = read(&app.source, |s| s.devices()).await?;
    Ok((no_store(), Json(devices)).into_response())
}

/// One device and its check-ins, oldest first.
#[utoipa::path(get, path = "/api/devices/{id}",
    params(("id" = u64, Path, description = "The device id")),
    responses(
        (status = 200, description = "The device and its boots", body = DeviceHistory),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 404, description = "No such device", body = ErrorBody),
        (status = 503, description = "Busy or too slow", body = ErrorBody),
        (status = 500, description = "The device state could not be read", body = ErrorBody),
))]
async fn get_device(State(app): Shared, Path(text): Path<String>) -> Result<Response, ApiError> {
    let id: u64 = text.parse().map_err(|why| ApiError::BadDeviceId {
        text: text.chars().take(ECHO_MAX).collect(),
        why,
    })?;
    let history = read(&app.source, move |s| s.device(id))
        .await?
        .ok_or(ApiError::UnknownDevice(id))?;
    Ok((no_store(), Json(history)).into_response())
}

/// Every rollout.
#[utoipa::path(get, path = "/api/rollouts", responses(
    (status = 200, description = "The rollouts", body = Vec<Rollout>),
    (status = 503, description = "Busy or too slow", body = ErrorBody),
    (status = 500, description = "The rollouts could not be read", body = ErrorBody),
))]
async fn list_rollouts(State(app): Shared) -> Result<Response, ApiError> {
    let rollouts = read(&app.source, |s| s.rollouts()).await?;
    Ok((no_store(), Json(rollouts)).into_response())
}

/// This document: the API's OpenAPI 3 description.
#[utoipa::path(get, path = "/api/openapi.json", responses(
    (status = 200, description = "The OpenAPI document", content_type = "application/json"),
))]
async fn openapi_json(State(app): Shared) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.openapi.clone(),
    )
        .into_response()
}

/// An embedded asset, with its content type.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Everything the page loads is its own: no inline script, no other origin.
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'"),
        ],
        body,
    )
        .into_response()
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().chars().take(ECHO_MAX).collect())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::Method(method)
}

/// What the load-shedding and timeout layers fail with, as an [`ApiError`].
async fn overload(err: BoxError) -> ApiError {
    if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Busy
    } else if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else {
        ApiError::Internal(err.to_string())
    }
}

fn router(source: Arc<dyn Source>) -> Router {
    let openapi = ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document is plain data: it serialises");
    let state = Arc::new(AppState { source, openapi });
    let routes = Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
        .route("/api/devices", get(list_devices))
        .route("/api/devices/{id}", get(get_device))
        .route("/api/rollouts", get(list_rollouts))
        .route("/api/openapi.json", get(openapi_json))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    // The bounds wrap the whole router, once: `Router::layer` would give each route a semaphore
    // of its own.
    let bounded = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overload))
        .load_shed()
        .concurrency_limit(MAX_IN_FLIGHT)
        .timeout(REQUEST_TIMEOUT)
        .service(routes);
    Router::new().fallback_service(bounded)
}

/// Serves the dashboard on `listener` from `source` until `shutdown` completes, then lets the
/// requests in flight finish.
///
/// `GET /` is the page (`/dashboard.js`, `/dashboard.css`, `/favicon.svg` its script, stylesheet and icon);
/// `GET /api/devices`, `/api/devices/{id}`, `/api/rollouts` the JSON API; `GET /api/openapi.json`
/// its OpenAPI 3 document. Every error is `{"error": "..."}`.
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn Source>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = Bounded {
        inner: listener,
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    axum::serve(listener, router(source))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A listener that holds at most [`MAX_CONNECTIONS`] connections open (axum's own accepts any
/// number), each for at most [`CONNECTION_LIFETIME`].
struct Bounded {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for Bounded {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (stream, peer) = axum::serve::Listener::accept(&mut self.inner).await;
        let connection = Connection {
            stream,
            deadline: Box::pin(tokio::time::sleep(CONNECTION_LIFETIME)),
            _permit: permit,
        };
        (connection, peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection: it holds its place among the [`MAX_CONNECTIONS`] until dropped, and its
/// reads fail once [`CONNECTION_LIFETIME`] has passed, which closes it.
struct Connection {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection's lifetime is over",
            )));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
