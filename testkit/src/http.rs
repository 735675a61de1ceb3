//! The HTTP calls a test makes to a node's API or Raft port, through reqwest: no redirect
//! followed (a test looks at the 307 itself), no proxy, no connection kept past its call, and
//! each call made from the calling thread, so that a test running inside a network namespace
//! (`netns::Net::run_in`) calls from there.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// How long a plain call waits for its TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long [`http`] waits for each read of the answer.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`http_get_json`] waits for each read: a status poll that gives up quickly.
const POLL_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Tries of [`call_following_redirects`], and the pause between two while no leader answers.
const REDIRECT_TRIES: usize = 200;
const NO_LEADER_PAUSE: Duration = Duration::from_millis(50);

/// The answer to a request: status code, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// The body's JSON when the status is 200.
    fn json_if_ok(&self) -> Option<Value> {
        (self.status == 200).then(|| serde_json::from_str(&self.body).ok())?
    }
}

/// A plain HTTP GET with 1 s timeouts, JSON body parsed. `None` unless the answer is 200 with
/// JSON.
pub fn http_get_json(addr: &str, path: &str) -> Option<Value> {
    http_with_timeout(addr, "GET", path, &[], None, POLL_READ_TIMEOUT)?.json_if_ok()
}

/// A request with an optional session token and idempotency key; the node must answer.
pub fn http_as(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    http(addr, method, path, &headers, body).unwrap_or_else(|| panic!("{addr} did not answer {method} {path}"))
}

/// A plain HTTP/1.1 request (no redirects followed, 1 s to connect, 2 s for each read). `None`
/// when the node cannot be reached or the answer is not HTTP.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<HttpResponse> {
    http_with_timeout(addr, method, path, headers, body, READ_TIMEOUT)
}

/// [`http`] with `timeout` for each read of the answer (for calls that wait, like a membership
/// change). `addr` is `ip:port`.
pub fn http_with_timeout(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> Option<HttpResponse> {
    let addr: SocketAddr = addr.parse().ok()?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .ok()?;
    let mut headers = headers.to_vec();
    headers.push(("connection", "close"));
    block_on(send(&client, method, format!("http://{addr}{path}"), &headers, body)).ok()
}

/// Who a test's HTTPS call shows itself as to a node's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsAs {
    /// No client certificate (a peer, a script).
    Anonymous,
    /// The operator's certificate beside the cluster CA (what `tracker-node members` shows).
    Operator,
    /// Node N's own certificate: of the cluster CA, but not the operator's.
    Node(u64),
}

/// One HTTPS call to a node's API with the CA of the cluster file `config` pinned, as
/// `who`, answered within `timeout`; `Err` says why no answer came (a TLS refusal, a timeout).
#[allow(clippy::too_many_arguments)]
pub fn https_with_timeout(
    config: &Path,
    who: TlsAs,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let client = tls_for(config, who)?.reqwest_builder().timeout(timeout).build().map_err(|e| e.to_string())?;
    block_on(send(&client, method, format!("https://{addr}{path}"), headers, body))
}

/// The TLS settings of `who`: the cluster CA of `config`, and the client certificate it shows.
fn tls_for(config: &Path, who: TlsAs) -> Result<tracker_client::TrackerTls, String> {
    let cfg = proto::cluster::ClusterConfig::load(config).map_err(|e| e.to_string())?;
    let TlsAs::Node(id) = who else {
        return tracker_client::TrackerTls::from_cluster(&cfg, who == TlsAs::Operator);
    };
    let files = cfg.tls_files(id);
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (ca, cert, key) = (read(&files.ca.path)?, read(&files.cert.path)?, read(&files.key.path)?);
    tracker_client::TrackerTls::new(&ca, Some(tracker_client::tls::Identity { cert_pem: &cert, key_pem: &key }))
}

/// One request through `client`; a non-empty body goes as JSON.
async fn send(
    client: &reqwest::Client,
    method: &str,
    url: String,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<HttpResponse, String> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut b = client.request(method, url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    let r = b.body(body.to_string()).send().await.map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).trim().to_string()))
        .collect();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Runs one call to completion on a runtime of its own: on this thread, or, when this thread
/// already runs a runtime (a test's async code calling a blocking helper), on a scoped thread
/// started from it (a thread starts in its creator's network namespace).
fn block_on<T: Send>(call: impl Future<Output = T> + Send) -> T {
    fn run<T>(call: impl Future<Output = T>) -> T {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        rt.expect("a runtime for one HTTP call").block_on(call)
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return run(call);
    }
    std::thread::scope(|s| s.spawn(|| run(call)).join().expect("the HTTP call's thread"))
}

/// Whether `addr` (`ip:port`) is a loopback address, where nodes also serve plain HTTP.
pub fn is_loopback(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
}

/// GETs a node's JSON at `path`: plain HTTP on a loopback address, HTTPS with the CA of the
/// cluster file `config` pinned anywhere else (a node serves only HTTPS there). `None` unless
/// the answer is 200 with JSON.
pub fn node_get_json(config: &Path, addr: &str, path: &str) -> Option<Value> {
    if is_loopback(addr) {
        return http_get_json(addr, path);
    }
    https_with_timeout(config, TlsAs::Anonymous, addr, "GET", path, &[], None, POLL_READ_TIMEOUT).ok()?.json_if_ok()
}

/// A call through the API that follows the cluster's redirects to the leader (307) and waits
/// out elections (503), at most 200 tries of 50 ms: the first other answer.
pub fn call_following_redirects(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let mut addr = addr.to_string();
    for _ in 0..REDIRECT_TRIES {
        let r = http_as(&addr, method, path, token, None, body);
        match r.status {
            307 => {
                let location = r.header("location").expect("a 307 has a Location").to_string();
                addr = location.strip_prefix("http://").unwrap().split('/').next().unwrap().to_string();
            }
            503 => std::thread::sleep(NO_LEADER_PAUSE),
            _ => return r,
        }
    }
    panic!("{method} {path}: no leader answered");
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A one-shot server on a loopback port: reads one request head (and a body of its
    /// Content-Length), answers `answer`, closes; the request comes back through the handle.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn);
            let mut request = String::new();
            let mut content_length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        content_length = v.trim().parse().unwrap();
                    }
                }
                request.push_str(&line);
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0u8; content_length];
            reader.read_exact(&mut body).unwrap();
            request.push_str(&String::from_utf8_lossy(&body));
            reader.get_mut().write_all(answer.as_bytes()).unwrap();
            request
        });
        (addr, handle)
    }

    #[test]
    fn a_call_sends_its_headers_and_json_and_reads_a_chunked_answer() {
        let (addr, server) = serve_once(
            "HTTP/1.1 201 Created\r\nX-Thing: a b \r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\n{\"a\r\n6\r\n\":1}\r\n\r\n0\r\n\r\n",
        );
        let r = http_as(&addr, "POST", "/v1/groups?x=1", Some("tok"), Some("k-1"), Some(r#"{"group":"g"}"#));
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(request.starts_with("post /v1/groups?x=1 http/1.1\r\n"), "{request}");
        for h in ["authorization: bearer tok", "idempotency-key: k-1", "content-type: application/json"] {
            assert!(request.contains(h), "{h}: {request}");
        }
        assert!(request.contains(&format!("host: {addr}")) && request.ends_with(r#"{"group":"g"}"#), "{request}");
        assert_eq!((r.status, r.header("X-Thing"), r.json()), (201, Some("a b"), serde_json::json!({"a": 1})));
    }

    #[test]
    fn a_redirect_is_returned_not_followed_and_a_silent_server_is_no_answer() {
        let (addr, server) = serve_once("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/x\r\n\r\n");
        let r = http(&addr, "GET", "/x", &[], None).expect("an answer");
        server.join().unwrap();
        assert_eq!((r.status, r.header("location")), (307, Some("http://127.0.0.1:1/x")));

        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let started = std::time::Instant::now();
        assert!(http_with_timeout(&addr, "GET", "/", &[], None, Duration::from_millis(300)).is_none());
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(http_get_json("not an address", "/").is_none());
    }

    #[test]
    fn a_call_from_inside_a_runtime_is_made_too() {
        let (addr, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let got = rt.block_on(async { http_get_json(&addr, "/v1/status") });
        server.join().unwrap();
        assert_eq!(got, Some(serde_json::json!({"ok": true})));
    }
}
