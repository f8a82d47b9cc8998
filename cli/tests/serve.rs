//! `hrm serve` over loopback: right answers (the same as `hrm solve`, and the reference's on a
//! golden model), 503/504 and never a wrong answer under overload, flat memory, 4xx for hostile
//! requests, and a graceful SIGTERM. Bounded: a few seconds of load per test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hrm_tests::read_safetensors;
use serde_json::{json, Value};

const EASY: &str = "6..3.4.57.3459268...1...34234.1.9.76.9526....167.38.2...3.41.65579..3.......8.293";
/// The built-in model fails it alone and solves it in a later trajectory of an ensemble of 8.
const HARD: &str = "..7....89.5.3...4......7.3..6.79..2.3.......8.....6....76......42..........2..19.";

fn hrm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hrm")).args(args).output().expect("run hrm")
}

/// A running server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hrm"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hrm serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut port = None;
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                port = rest.split(' ').next().and_then(|p| p.parse().ok());
                break;
            }
        }
        let port = port.unwrap_or_else(|| panic!("the server did not start:\n{seen}"));
        let log = Arc::new(Mutex::new(seen));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Server { child, port, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        request(self.port, method, path, body)
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, body.to_string().as_bytes())
    }

    fn alive(&self) -> bool {
        let r = self.request("GET", "/healthz", b"");
        r.status == 200 && r.json()["status"] == "ok"
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("status {}: not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), read to the end.
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before it has read a large body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no HTTP response: {:?}", String::from_utf8_lossy(raw));
    });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    Reply { status, head, body: raw[split + 4..].to_vec() }
}

fn solve_cli(puzzles: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args = vec!["solve", "sudoku"];
    args.extend_from_slice(puzzles);
    args.extend_from_slice(extra);
    let o = hrm(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().lines().map(str::to_string).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn serve_answers_as_hrm_solve_does_and_reports_metrics() {
    let server = Server::start(&["--workers", "2", "--queue", "4"]);
    assert!(server.alive());
    for (ensemble, extra) in [(1u32, &[][..]), (8, &["--ensemble", "8"][..])] {
        let r = server.post("/v1/sudoku", &json!({ "puzzles": [EASY, HARD], "ensemble": ensemble }));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let reply = r.json();
        assert_eq!(strings(&reply["answers"]), solve_cli(&[EASY, HARD], extra), "ensemble {ensemble}");
        assert_eq!(reply["valid"][0], true);
        assert_eq!(reply["valid"][1], ensemble > 1, "only the ensemble solves the hard one");
    }
    let adaptive = server.post("/v1/sudoku", &json!({ "puzzles": [EASY], "adaptive": true })).json();
    assert_eq!(strings(&adaptive["answers"]), solve_cli(&[EASY], &["--adaptive"]));

    let model = server.request("GET", "/v1/model", b"").json();
    assert_eq!(model["seq_len"], 81);
    assert_eq!(model["sudoku"], true);
    let metrics = server.request("GET", "/metrics", b"");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(text.contains("hrm_requests_total{endpoint=\"/v1/sudoku\",status=\"200\"} 3"), "{text}");
    assert!(text.contains("hrm_queue_depth 0"), "{text}");
    assert!(text.contains("hrm_request_duration_seconds_count"), "{text}");
    let segments: u64 = text
        .lines()
        .find(|l| l.starts_with("hrm_segments_total "))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(segments >= 4 * 8, "{text}");
    // One log line per request.
    let log = server.log.lock().unwrap().clone();
    assert!(log.lines().filter(|l| l.contains("request") && l.contains("/v1/sudoku")).count() >= 3, "{log}");
}

/// `/v1/infer` on a golden HRM: the reference's Q values per segment and its last logits.
#[test]
fn serve_infer_matches_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let case = hrm_tests::fixture_dir().join("hrm-sudoku-tiny");
    let blob = tmp.path().join("m.blob");
    let o = hrm(&["convert", case.to_str().unwrap(), "--out", blob.to_str().unwrap()]);
    assert!(o.status.success());
    let want = read_safetensors(&case.join("expected.safetensors"));
    let inputs: Vec<Vec<i64>> = want["inputs"].i64.chunks(81).map(<[i64]>::to_vec).collect();
    let ids = &want["puzzle_identifiers"].i64;
    let server = Server::start(&["--model", blob.to_str().unwrap(), "--workers", "1"]);
    let r = server.post("/v1/infer", &json!({ "inputs": inputs, "puzzle_identifiers": ids, "logits": true }));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let reply = r.json();
    for (b, halts) in reply["q_halt"].as_array().unwrap().iter().enumerate() {
        let halts = halts.as_array().unwrap();
        assert_eq!(halts.len(), 4);
        for (s, q) in halts.iter().enumerate() {
            let q = q.as_f64().unwrap() as f32;
            let reference = want[&format!("segment{s}.q_halt")].f32[b];
            assert!(
                (q - reference).abs() <= 1e-4 * (1.0 + reference.abs()),
                "example {b} segment {s}: {q} vs {reference}"
            );
        }
    }
    let logits: Vec<f32> = reply["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e.as_array().unwrap())
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let err = hrm_tests::relative_error(&logits, &want["segment3.logits"].f32);
    assert!(err <= 1e-4, "last logits off by {err:.2e}");
}

/// Far above capacity (1 worker, a queue of 2, 24 clients without pause for 6 s): every answer
/// is right or a 503 with Retry-After / a 504, the server stays up and its memory flat.
#[test]
fn overload_gets_right_answers_or_503_and_memory_stays_flat() {
    let server = Server::start(&["--workers", "1", "--queue", "2", "--timeout-ms", "5000"]);
    let expected = solve_cli(&[EASY, HARD], &["--ensemble", "2"]);
    let body = json!({ "puzzles": [EASY, HARD], "ensemble": 2 }).to_string();
    let load = |seconds: f64| -> (usize, usize, usize) {
        let stop = Instant::now() + Duration::from_secs_f64(seconds);
        let counts = Arc::new(Mutex::new((0usize, 0usize, 0usize)));
        std::thread::scope(|scope| {
            for _ in 0..24 {
                let (counts, body, expected) = (Arc::clone(&counts), &body, &expected);
                let port = server.port;
                scope.spawn(move || {
                    while Instant::now() < stop {
                        let r = request(port, "POST", "/v1/sudoku", body.as_bytes());
                        let mut c = counts.lock().unwrap();
                        match r.status {
                            200 => {
                                assert_eq!(&strings(&r.json()["answers"]), expected, "a wrong answer under load");
                                c.0 += 1;
                            }
                            503 => {
                                assert!(r.head.to_ascii_lowercase().contains("retry-after: 1"), "{}", r.head);
                                assert!(r.json()["error"].as_str().unwrap().contains("queue is full"));
                                c.1 += 1;
                            }
                            504 => c.2 += 1,
                            other => panic!("status {other} under load: {}", String::from_utf8_lossy(&r.body)),
                        }
                    }
                });
            }
        });
        let c = *counts.lock().unwrap();
        c
    };
    load(1.5); // warm the allocator and the connection paths
    let before = server.rss_kib();
    let (ok, busy, late) = load(6.0);
    let after = server.rss_kib();
    assert!(ok > 0 && busy > 0, "{ok} answered, {busy} refused, {late} late");
    assert!(server.alive());
    let growth = after as f64 / before as f64;
    assert!((0.9..=1.1).contains(&growth), "RSS {before} KiB -> {after} KiB under sustained overload");
    let text = String::from_utf8(server.request("GET", "/metrics", b"").body).unwrap();
    assert!(text.contains("status=\"503\""), "{text}");
}

/// A request past its deadline gets 504, and its worker is free again right after.
#[test]
fn a_request_past_its_deadline_gets_504() {
    let server = Server::start(&["--workers", "1", "--timeout-ms", "1000"]);
    // 64 trajectories each of two puzzles that no model can solve (the givens do not clash, but
    // the first row's blank needs the 9 its column already has): every trajectory runs all its
    // segments, seconds of work, far past the deadline.
    let stubborn = format!("12345678.{}9{}", ".".repeat(8), ".".repeat(63));
    let r = server.post("/v1/sudoku", &json!({ "puzzles": [stubborn, stubborn], "ensemble": 64 }));
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"].as_str().unwrap().contains("deadline"));
    let quick = server.post("/v1/sudoku", &json!({ "puzzles": [EASY] }));
    assert_eq!(quick.status, 200, "the worker gave up the late request: {}", String::from_utf8_lossy(&quick.body));
}

/// Malformed, oversized, fuzzed, truncated and slow requests: 400 (413 for a body over the
/// limit, 404/405 for a wrong endpoint or method) with a JSON message each, never a 5xx or a
/// crash.
#[test]
fn hostile_requests_get_4xx_with_a_message() {
    let server = Server::start(&["--workers", "1", "--max-body", "65536", "--max-batch", "16", "--timeout-ms", "3000"]);
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let many: Vec<&str> = vec![EASY; 17];
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("POST", "/v1/sudoku", b"{".to_vec(), 400),
        ("POST", "/v1/sudoku", b"not json at all".to_vec(), 400),
        ("POST", "/v1/sudoku", vec![0xff, 0xfe, 0x00, 0x7b], 400),
        // Rejected at the first bracket (an object is expected), before any recursion.
        ("POST", "/v1/sudoku", deep.into_bytes(), 400),
        ("POST", "/v1/sudoku", br#"{"puzzles": "x"}"#.to_vec(), 400),
        ("POST", "/v1/sudoku", br#"{"puzzles": [1, 2]}"#.to_vec(), 400),
        ("POST", "/v1/sudoku", br#"{"puzzles": [], "ensemble": 1}"#.to_vec(), 400),
        ("POST", "/v1/sudoku", br#"{"puzzle": ["x"]}"#.to_vec(), 400),
        ("POST", "/v1/sudoku", json!({ "puzzles": many }).to_string().into_bytes(), 400),
        ("POST", "/v1/sudoku", json!({ "puzzles": [EASY], "ensemble": 0 }).to_string().into_bytes(), 400),
        ("POST", "/v1/sudoku", json!({ "puzzles": [EASY], "ensemble": 1_000_000 }).to_string().into_bytes(), 400),
        ("POST", "/v1/sudoku", json!({ "puzzles": [EASY], "ensemble": -1 }).to_string().into_bytes(), 400),
        ("POST", "/v1/sudoku", json!({ "puzzles": ["12345"] }).to_string().into_bytes(), 400),
        ("POST", "/v1/sudoku", json!({ "puzzles": [EASY.replace('6', "x")] }).to_string().into_bytes(), 400),
        ("POST", "/v1/sudoku", json!({ "puzzles": [format!("11{}", &EASY[2..])] }).to_string().into_bytes(), 400),
        ("POST", "/v1/sudoku", vec![b' '; 70_000], 413),
        ("POST", "/v1/infer", json!({ "inputs": [[1, 2]], "puzzle_identifiers": [0] }).to_string().into_bytes(), 400),
        (
            "POST",
            "/v1/infer",
            json!({ "inputs": [vec![11; 81]], "puzzle_identifiers": [0] }).to_string().into_bytes(),
            400,
        ),
        (
            "POST",
            "/v1/infer",
            json!({ "inputs": [vec![1; 81]], "puzzle_identifiers": [5] }).to_string().into_bytes(),
            400,
        ),
        (
            "POST",
            "/v1/infer",
            json!({ "inputs": [vec![1; 81]], "puzzle_identifiers": [] }).to_string().into_bytes(),
            400,
        ),
        (
            "POST",
            "/v1/infer",
            json!({ "inputs": [vec![1; 81]], "puzzle_identifiers": [0], "segments": 0 }).to_string().into_bytes(),
            400,
        ),
        ("GET", "/v1/sudoku", Vec::new(), 405),
        ("POST", "/nowhere", Vec::new(), 404),
    ];
    for (method, path, body, want) in &cases {
        let r = server.request(method, path, body);
        assert_eq!(
            r.status,
            *want,
            "{method} {path} {:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(60)]),
            String::from_utf8_lossy(&r.body)
        );
        let message = r.json()["error"].as_str().map(str::to_string);
        assert!(message.is_some_and(|m| !m.is_empty()), "{method} {path}: no message");
    }

    // Mutations of a valid body (flipped, inserted and dropped bytes, truncations): whatever
    // they become, the answer is 200 or a 4xx.
    let valid = json!({ "puzzles": [EASY], "ensemble": 1, "adaptive": false }).to_string().into_bytes();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200 {
        let mut body = valid.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % body.len().max(1);
            match next() % 4 {
                0 => body[at] = next() as u8,
                1 => body.insert(at, b"{}[]\",:0-9e\\ "[(next() % 13) as usize]),
                2 => {
                    body.remove(at);
                }
                _ => body.truncate(at),
            }
            if body.is_empty() {
                break;
            }
        }
        let r = server.request("POST", "/v1/sudoku", &body);
        assert!(
            r.status == 200 || (400..500).contains(&r.status),
            "status {} for {:?}",
            r.status,
            String::from_utf8_lossy(&body)
        );
    }

    // A body cut short (Content-Length promises more, then the client goes away), and slow
    // clients that hold connections with half a request: the others are still served.
    {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.write_all(b"POST /v1/sudoku HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"puzzles\": [").unwrap();
    }
    let slow: Vec<TcpStream> = (0..32)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.write_all(b"POST /v1/sudoku HTTP/1.1\r\nHost: x\r\nContent-Len").unwrap();
            s
        })
        .collect();
    let r = server.post("/v1/sudoku", &json!({ "puzzles": [EASY] }));
    assert_eq!(r.status, 200, "slow clients blocked a request");
    drop(slow);
    assert!(server.alive());
    let log = server.log.lock().unwrap().clone();
    assert!(!log.contains("panicked"), "{log}");
}

/// SIGTERM while a request runs: it is answered in full, then the server exits 0.
#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let mut server = Server::start(&["--workers", "1"]);
    let expected = solve_cli(&[HARD, HARD, HARD], &["--ensemble", "8"]);
    let port = server.port;
    let client = std::thread::spawn(move || {
        request(
            port,
            "POST",
            "/v1/sudoku",
            json!({ "puzzles": [HARD, HARD, HARD], "ensemble": 8 }).to_string().as_bytes(),
        )
    });
    // Until the worker has the request (busy), then the signal.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = String::from_utf8(server.request("GET", "/metrics", b"").body).unwrap();
        if text.contains("hrm_workers_busy 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the request never started: {text}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(kill.success());
    let reply = client.join().unwrap();
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(strings(&reply.json()["answers"]), expected);
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", server.log.lock().unwrap());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "still accepting after SIGTERM");
}
