//! `hrm serve`: a bounded inference service over one model.
//!
//! Request → parse and validate (async, axum on a small tokio runtime) → a bounded queue → one
//! of N worker threads, each with its own session and arena allocated at start over the one
//! shared, memory-mapped model → the reply. Nothing grows with load: a full queue answers 503 at
//! once, a request past its deadline 504 (its worker stops at the next segment), bodies are
//! capped, and SIGTERM stops accepting, finishes what is in flight and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use hrm_runtime::ensemble::{self, Plan};
use hrm_runtime::sudoku::{self, Grid};
use hrm_runtime::{Halting, Model, Session};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

#[derive(Args)]
pub struct ServeArgs {
    /// A model blob, memory-mapped (default: the Sudoku model built into `hrm`).
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Address to listen on (port 0: any free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Inference workers, each a session with its own arena (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: Option<u32>,
    /// Requests that may wait for a worker; beyond them the server answers 503 at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=65_536))]
    queue: u32,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(2..=(1 << 30)))]
    max_body: u64,
    /// Deadline of a request, queueing included (504 beyond); also the limit on reading a body.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    timeout_ms: u64,
    /// Examples (puzzles or rows) per request, at most.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_batch: u32,
    /// Largest `ensemble` a request may ask for.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_ensemble: u32,
}

/// What a worker runs for one request.
enum Work {
    Sudoku { grids: Vec<Grid>, plan: Option<Plan> },
    Infer { rows: Vec<(Vec<u32>, u32)>, limit: u32, adaptive: bool, logits: bool },
}

struct Job {
    work: Work,
    deadline: Instant,
    /// Set when the handler gave up (deadline): the worker stops at the next segment.
    cancelled: Arc<AtomicBool>,
    reply: oneshot::Sender<Result<Reply, Failure>>,
}

enum Failure {
    Deadline,
    Internal(String),
}

#[derive(Serialize)]
#[serde(untagged)]
enum Reply {
    Sudoku(SudokuReply),
    Infer(InferReply),
}

#[derive(Serialize)]
struct SudokuReply {
    answers: Vec<String>,
    valid: Vec<bool>,
    segments: Vec<u64>,
    trajectories: Vec<u32>,
}

#[derive(Serialize)]
struct InferReply {
    /// Per example, per segment run.
    q_halt: Vec<Vec<f32>>,
    q_continue: Vec<Vec<f32>>,
    segments: Vec<u32>,
    predictions: Vec<Vec<u32>>,
    /// The last segment's logits `[B][seq_len][vocab]`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<Vec<Vec<Vec<f32>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SudokuRequest {
    puzzles: Vec<String>,
    ensemble: Option<u32>,
    adaptive: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferRequest {
    inputs: Vec<Vec<u32>>,
    puzzle_identifiers: Vec<u32>,
    segments: Option<u32>,
    adaptive: Option<bool>,
    logits: Option<bool>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: u16,
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
    queue_depth: Gauge,
    busy: Gauge,
    segments: Counter,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let (queue_depth, busy, segments) = (Gauge::default(), Gauge::default(), Counter::default());
        registry.register("hrm_requests", "HTTP requests by endpoint and status", requests.clone());
        registry.register("hrm_request_duration_seconds", "Time from request to response", latency.clone());
        registry.register("hrm_queue_depth", "Requests waiting for a worker", queue_depth.clone());
        registry.register("hrm_workers_busy", "Workers running a request", busy.clone());
        registry.register("hrm_segments", "ACT segments run", segments.clone());
        Metrics { registry, requests, latency, queue_depth, busy, segments }
    }
}

/// What the workers share with the handlers. Not the queue's sender: the workers end when the
/// last handle on it (the router's) is gone.
struct Shared {
    model: Model<'static>,
    metrics: Metrics,
}

struct App {
    shared: Arc<Shared>,
    name: String,
    blob_bytes: usize,
    jobs: SyncSender<Job>,
    timeout: Duration,
    max_batch: usize,
    max_ensemble: u32,
}

/// An error answer: the status and `{"error": message}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let (model, name, blob_bytes) = match &args.model {
        Some(path) => {
            // Mapped once for the process's life: every worker's session reads it in place.
            let blob: &'static hrm_host::MappedBlob = Box::leak(Box::new(hrm_host::MappedBlob::open(path)?));
            let model =
                Model::from_bytes(blob).with_context(|| format!("{} is not a usable model blob", path.display()))?;
            (model, path.display().to_string(), blob.len())
        }
        None => {
            let model = crate::default_sudoku_model()?;
            (model, "the built-in Sudoku model".to_string(), crate::default_sudoku_blob_len())
        }
    };
    let workers = args.workers.map_or_else(|| crate::threads(None), |w| w as usize);
    let (jobs, queue) = mpsc::sync_channel::<Job>(args.queue as usize);
    let queue = Arc::new(Mutex::new(queue));
    let shared = Arc::new(Shared { model, metrics: Metrics::new() });
    let app = Arc::new(App {
        shared: Arc::clone(&shared),
        name,
        blob_bytes,
        jobs,
        timeout: Duration::from_millis(args.timeout_ms),
        max_batch: args.max_batch as usize,
        max_ensemble: args.max_ensemble,
    });
    // Every arena is allocated here, before the first request.
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let mut arena = vec![0u8; model.arena_bytes()];
        Session::new(model, &mut arena).context("cannot start a session on this model")?;
        let (queue, shared) = (Arc::clone(&queue), Arc::clone(&shared));
        let handle = std::thread::Builder::new()
            .name(format!("hrm-worker-{i}"))
            .spawn(move || worker(&shared, &queue, arena))
            .context("cannot start a worker thread")?;
        handles.push(handle);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let max_body = usize::try_from(args.max_body).unwrap_or(usize::MAX);
    let served = runtime.block_on(serve(Arc::clone(&app), args.addr, max_body, workers, args.queue));
    // The router and its handles on the queue are gone: the workers finish and return.
    drop(app);
    for handle in handles {
        let _ = handle.join();
    }
    served
}

/// The HTTP threads run at the lowest priority (nice 19), below the inference workers: under
/// overload the flood of cheap 503 answers must not take the cores the workers need (measured,
/// BENCHMARKS.md: at normal priority two workers answered 40 % fewer requests under 64 clients
/// than under 2, at nice 10 9 % fewer).
fn lower_priority() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: setpriority on the calling thread (Linux applies PRIO_PROCESS with id 0 to the
    // thread); a failure only leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

async fn serve(app: Arc<App>, addr: SocketAddr, max_body: usize, workers: usize, queue: u32) -> Result<()> {
    let timeout = app.timeout;
    let router = Router::new()
        .route("/v1/sudoku", post(sudoku))
        .route("/v1/infer", post(infer))
        .route("/v1/model", get(model_info))
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here (POST /v1/sudoku and /v1/infer; GET the others)",
            )
        })
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint (POST /v1/sudoku, POST /v1/infer, GET /v1/model, /healthz, /metrics)",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(timeout))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), track))
        .with_state(Arc::clone(&app));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    eprintln!(
        "hrm serve: {} on http://{local} ({workers} worker{}, queue {queue}, deadline {} ms)",
        app.name,
        if workers == 1 { "" } else { "s" },
        timeout.as_millis()
    );
    axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await.context("the server failed")?;
    tracing::info!("stopped: every request in flight was answered");
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: no new connections, finishing the requests in flight");
}

/// Counts, times and logs every request (one line each).
async fn track(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The route's pattern, never the raw path: the label set stays bounded.
    let endpoint = request.extensions().get::<MatchedPath>().map_or("other", |p| p.as_str()).to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    app.shared.metrics.requests.get_or_create(&RequestLabels { endpoint: endpoint.clone(), status }).inc();
    app.shared.metrics.latency.observe(seconds);
    tracing::info!(%method, endpoint, status, ms = format_args!("{:.1}", seconds * 1000.0), "request");
    response
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &app.shared.metrics.registry).is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics");
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

async fn model_info(State(app): State<Arc<App>>) -> Response {
    let c = app.shared.model.config();
    Json(serde_json::json!({
        "name": app.name,
        "kind": format!("{:?}", c.kind),
        "hidden_size": c.hidden_size,
        "num_heads": c.num_heads,
        "h_layers": c.h_layers,
        "l_layers": c.l_layers,
        "h_cycles": c.h_cycles,
        "l_cycles": c.l_cycles,
        "halt_max_steps": c.halt_max_steps,
        "halt_rule": format!("{:?}", c.halt_rule),
        "seq_len": c.seq_len,
        "vocab_size": c.vocab_size,
        "num_puzzle_identifiers": c.num_puzzle_identifiers,
        "puzzle_emb_len": c.puzzle_emb_len,
        "positions": format!("{:?}", c.pos_encoding),
        "mlp_t": c.mlp_t,
        "block": c.block,
        "arena_bytes": app.shared.model.arena_bytes(),
        "blob_bytes": app.blob_bytes,
        "sudoku": is_sudoku(&app.shared.model),
    }))
    .into_response()
}

fn is_sudoku(model: &Model<'_>) -> bool {
    let c = model.config();
    c.seq_len as usize == sudoku::CELLS && c.vocab_size == sudoku::VOCAB
}

/// The body as JSON of type `T`, or the status and message of the error answer.
fn parse<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, (StatusCode, String)> {
    let bytes = body.map_err(|r| (r.status(), r.body_text()))?;
    serde_json::from_slice(&bytes).map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))
}

async fn sudoku(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let request: SudokuRequest = match parse(body) {
        Ok(r) => r,
        Err((status, message)) => return error(status, message),
    };
    if !is_sudoku(&app.shared.model) {
        return error(StatusCode::NOT_FOUND, format!("{} is not a Sudoku model: use /v1/infer", app.name));
    }
    if request.puzzles.is_empty() || request.puzzles.len() > app.max_batch {
        return error(
            StatusCode::BAD_REQUEST,
            format!("give 1 to {} puzzles, got {}", app.max_batch, request.puzzles.len()),
        );
    }
    let k = request.ensemble.unwrap_or(1);
    if k == 0 || k > app.max_ensemble {
        return error(StatusCode::BAD_REQUEST, format!("ensemble must be 1 to {}, got {k}", app.max_ensemble));
    }
    let mut grids = Vec::with_capacity(request.puzzles.len());
    for (i, text) in request.puzzles.iter().enumerate() {
        match sudoku::parse(text) {
            Ok(g) => grids.push(g),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("puzzle {i}: {e}")),
        }
    }
    let adaptive = request.adaptive.unwrap_or(false);
    // As `hrm solve sudoku --ensemble K [--adaptive]`: the same answers for the same request.
    let plan = (k > 1 || adaptive)
        .then(|| Plan { halting: if adaptive { Halting::Adaptive } else { Halting::Fixed }, ..Plan::symmetries(k) });
    submit(&app, Work::Sudoku { grids, plan }).await
}

async fn infer(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let request: InferRequest = match parse(body) {
        Ok(r) => r,
        Err((status, message)) => return error(status, message),
    };
    let c = app.shared.model.config();
    let (b, ids) = (request.inputs.len(), request.puzzle_identifiers.len());
    if b == 0 || b > app.max_batch {
        return error(StatusCode::BAD_REQUEST, format!("give 1 to {} input rows, got {b}", app.max_batch));
    }
    if ids != b {
        return error(StatusCode::BAD_REQUEST, format!("{b} input rows but {ids} puzzle_identifiers"));
    }
    for (i, (row, &id)) in request.inputs.iter().zip(&request.puzzle_identifiers).enumerate() {
        if row.len() != c.seq_len as usize {
            return error(
                StatusCode::BAD_REQUEST,
                format!("inputs[{i}] has {} tokens, the model takes {}", row.len(), c.seq_len),
            );
        }
        if let Some(t) = row.iter().find(|&&t| t >= c.vocab_size) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("inputs[{i}] holds token {t}, the vocabulary has {}", c.vocab_size),
            );
        }
        if id >= c.num_puzzle_identifiers {
            return error(
                StatusCode::BAD_REQUEST,
                format!("puzzle_identifiers[{i}] is {id}, the model has {}", c.num_puzzle_identifiers),
            );
        }
    }
    let limit = request.segments.unwrap_or(c.halt_max_steps);
    if limit == 0 || limit > c.halt_max_steps.max(1) * 4 {
        return error(
            StatusCode::BAD_REQUEST,
            format!("segments must be 1 to {}, got {limit}", c.halt_max_steps.max(1) * 4),
        );
    }
    let rows = request.inputs.into_iter().zip(request.puzzle_identifiers).collect();
    let work = Work::Infer {
        rows,
        limit,
        adaptive: request.adaptive.unwrap_or(false),
        logits: request.logits.unwrap_or(false),
    };
    submit(&app, work).await
}

/// Queues `work` (503 at once when the queue is full) and waits for its answer until the
/// request's deadline (504).
async fn submit(app: &App, work: Work) -> Response {
    let deadline = Instant::now() + app.timeout;
    let cancelled = Arc::new(AtomicBool::new(false));
    let (reply, answer) = oneshot::channel();
    let job = Job { work, deadline, cancelled: Arc::clone(&cancelled), reply };
    app.shared.metrics.queue_depth.inc();
    match app.jobs.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            app.shared.metrics.queue_depth.dec();
            let mut response =
                error(StatusCode::SERVICE_UNAVAILABLE, "every worker is busy and the queue is full; retry shortly");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    }
    match tokio::time::timeout_at(deadline.into(), answer).await {
        Ok(Ok(Ok(reply))) => Json(reply).into_response(),
        Ok(Ok(Err(Failure::Internal(message)))) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
        Ok(Ok(Err(Failure::Deadline))) | Err(_) => {
            cancelled.store(true, Ordering::Relaxed);
            error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the request's deadline of {} ms passed", app.timeout.as_millis()),
            )
        }
        Ok(Err(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, "the worker stopped without an answer"),
    }
}

/// One worker thread: its session lives as long as the server.
fn worker(app: &Shared, queue: &Mutex<Receiver<Job>>, mut arena: Vec<u8>) {
    let Ok(mut session) = Session::new(app.model, &mut arena) else { return };
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return, // the server is gone
            }
        };
        app.metrics.queue_depth.dec();
        app.metrics.busy.inc();
        let expired = || job.cancelled.load(Ordering::Relaxed) || Instant::now() >= job.deadline;
        let result =
            if expired() { Err(Failure::Deadline) } else { execute(&mut session, &job.work, &expired, &app.metrics) };
        app.metrics.busy.dec();
        let _ = job.reply.send(result);
    }
}

fn execute(
    session: &mut Session<'_, '_>,
    work: &Work,
    expired: &dyn Fn() -> bool,
    metrics: &Metrics,
) -> Result<Reply, Failure> {
    let internal = |e: hrm_runtime::Error| Failure::Internal(format!("inference failed: {e}"));
    match work {
        Work::Sudoku { grids, plan } => {
            let mut reply =
                SudokuReply { answers: Vec::new(), valid: Vec::new(), segments: Vec::new(), trajectories: Vec::new() };
            for grid in grids {
                let (answer, segments, trajectories) = match plan {
                    None => {
                        session.reset(&sudoku::to_tokens(grid), 0).map_err(internal)?;
                        let mut segments = 0u64;
                        for _ in 0..session.model().config().halt_max_steps {
                            if expired() {
                                return Err(Failure::Deadline);
                            }
                            session.step().map_err(internal)?;
                            segments += 1;
                            metrics.segments.inc();
                        }
                        let mut tokens = [0u32; sudoku::CELLS];
                        session.predictions(&mut tokens).map_err(internal)?;
                        (sudoku::from_tokens(&tokens), segments, 1)
                    }
                    Some(plan) => {
                        let outcome = ensemble::solve_sudoku(session, grid, plan, |_, _| {
                            metrics.segments.inc();
                            !expired()
                        })
                        .map_err(internal)?;
                        if outcome.cut_short && expired() {
                            return Err(Failure::Deadline);
                        }
                        (outcome.answer, outcome.segments, outcome.trajectories)
                    }
                };
                reply.answers.push(answer.iter().map(|&d| char::from(b'0' + d)).collect());
                reply.valid.push(sudoku::is_solution(grid, &answer));
                reply.segments.push(segments);
                reply.trajectories.push(trajectories);
            }
            Ok(Reply::Sudoku(reply))
        }
        Work::Infer { rows, limit, adaptive, logits } => {
            let c = *session.model().config();
            let mut reply = InferReply {
                q_halt: Vec::new(),
                q_continue: Vec::new(),
                segments: Vec::new(),
                predictions: Vec::new(),
                logits: logits.then(Vec::new),
            };
            for (row, id) in rows {
                session.reset(row, *id).map_err(internal)?;
                let (mut halts, mut continues) = (Vec::new(), Vec::new());
                for _ in 0..*limit {
                    if expired() {
                        return Err(Failure::Deadline);
                    }
                    let outcome = session.step().map_err(internal)?;
                    metrics.segments.inc();
                    halts.push(outcome.q_halt);
                    continues.push(outcome.q_continue);
                    if *adaptive && outcome.halt_requested {
                        break;
                    }
                }
                let mut predictions = vec![0u32; c.seq_len as usize];
                session.predictions(&mut predictions).map_err(internal)?;
                if let Some(all) = reply.logits.as_mut() {
                    let mut values = vec![0.0f32; c.seq_len as usize * c.vocab_size as usize];
                    session.logits_into(&mut values).map_err(internal)?;
                    all.push(values.chunks(c.vocab_size as usize).map(<[f32]>::to_vec).collect());
                }
                reply.segments.push(halts.len() as u32);
                reply.q_halt.push(halts);
                reply.q_continue.push(continues);
                reply.predictions.push(predictions);
            }
            Ok(Reply::Infer(reply))
        }
    }
}
