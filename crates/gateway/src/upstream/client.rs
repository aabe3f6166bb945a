//! The HTTP client of the upstream transports: hyper's pooled HTTP/1 client over rustls (ring,
//! the web PKI roots), following no redirect, with a connect timeout. A link parses its URL
//! once ([`Target`]); a request then costs no URL parsing, no redirect or retry layers.
//!
//! Why not reqwest here (the CLI's client and the webhook keep it): on the forwarded hop it
//! re-parsed the URL twice per request (its redirect policy and its response), about 3 % of
//! the gateway's CPU under load, for features an upstream link must not use (redirects).

use crate::http::PerCore;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use hyper::{Method, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;

/// How long a TCP connect to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Pooled = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// Pools of keep-alive connections (cheap to clone: clones share the pools). A request sent
/// from one of the gateway's cores ([`crate::http::Cores`]) takes a connection of that
/// core's own pool, whose driver task runs on the same thread: the request and its upstream
/// connection never wait on each other across threads. Elsewhere (tests, the CLI) one pool
/// is shared.
#[derive(Clone)]
pub(crate) struct Client(Arc<Pools>);

struct Pools {
    connector: Connector,
    shared: Pooled,
    per_core: PerCore<Pooled>,
}

fn pool(connector: Connector) -> Pooled {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Where requests go: the URL parsed once, its `user:password@` turned into a Basic
/// `Authorization` header (never into the `Host` header).
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The URI requests are sent to (without userinfo).
    pub uri: Uri,
    /// `Authorization: Basic …` from the URL's userinfo, if it had one.
    pub basic: Option<HeaderValue>,
}

impl Target {
    /// Parses an `http://` or `https://` URL (resolving `..`, percent-encoding as browsers
    /// do).
    pub fn parse(url: &str) -> Result<Target, String> {
        let mut u = url::Url::parse(url).map_err(|e| e.to_string())?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("the scheme {:?} is not http or https", u.scheme()));
        }
        let basic = (!u.username().is_empty() || u.password().is_some()).then(|| {
            use base64::Engine;
            let user = percent_decoded(u.username());
            let pass = u.password().map(percent_decoded).unwrap_or_default();
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            let mut v = HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is ASCII");
            v.set_sensitive(true);
            v
        });
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_fragment(None);
        let uri = u.as_str().parse::<Uri>().map_err(|e| e.to_string())?;
        Ok(Target { uri, basic })
    }
}

fn percent_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Why a request could not be sent or its answer read: the cause chain in one line.
#[derive(Debug)]
pub(crate) struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error {
    fn from_chain(e: &(dyn std::error::Error + 'static)) -> Error {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            let s = c.to_string();
            if !text.contains(&s) {
                text.push_str(": ");
                text.push_str(&s);
            }
            cause = c.source();
        }
        Error(text)
    }
}

/// An answer whose body is read chunk by chunk.
pub(crate) struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|e| Error::from_chain(&e))?;
            if let Ok(data) = frame.into_data() {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

impl Client {
    /// A pool with its own TLS configuration.
    pub fn new() -> Result<Client, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Client(Arc::new(Pools {
            shared: pool(https.clone()),
            connector: https,
            per_core: PerCore::new(),
        })))
    }

    /// The pool a request sent from this thread takes its connection from.
    fn pool(&self) -> Pooled {
        let p = &self.0;
        p.per_core
            .get(|| pool(p.connector.clone()))
            .unwrap_or_else(|| p.shared.clone())
    }

    /// Sends one request to `to` and returns once the answer's head has arrived.
    pub async fn send(
        &self,
        method: Method,
        to: &Target,
        mut headers: HeaderMap,
        body: impl Into<Bytes>,
    ) -> Result<Response, Error> {
        if let Some(b) = &to.basic {
            headers.entry(AUTHORIZATION).or_insert_with(|| b.clone());
        }
        let mut req = hyper::Request::new(Full::new(body.into()));
        *req.method_mut() = method;
        *req.uri_mut() = to.uri.clone();
        *req.headers_mut() = headers;
        let resp = self
            .pool()
            .request(req)
            .await
            .map_err(|e| Error::from_chain(&e))?;
        let (head, body) = resp.into_parts();
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_keeps_userinfo_out_of_the_uri_and_in_basic_auth() {
        let t = Target::parse("https://al%40ice:p%3Ass@example.com:8443/mcp?x=1#frag").unwrap();
        assert_eq!(t.uri.to_string(), "https://example.com:8443/mcp?x=1");
        assert_eq!(t.uri.authority().unwrap().as_str(), "example.com:8443");
        let basic = t.basic.unwrap();
        assert!(basic.is_sensitive());
        // base64("al@ice:p:ss")
        assert_eq!(basic.to_str().unwrap(), "Basic YWxAaWNlOnA6c3M=");
        let plain = Target::parse("http://127.0.0.1:9/mcp").unwrap();
        assert!(plain.basic.is_none());
        assert_eq!(plain.uri.path(), "/mcp");
        assert!(Target::parse("ftp://example.com/").is_err());
        assert!(Target::parse("not a url").is_err());
    }

    /// `https://` goes through rustls with the web PKI roots: a server whose certificate no
    /// public authority issued is refused during the handshake, before any request is sent.
    #[tokio::test]
    async fn https_verifies_the_servers_certificate() {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let cert = CertificateDer::from(
            include_bytes!("../../tests/fixtures/tls/self-signed.der").to_vec(),
        );
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            include_bytes!("../../tests/fixtures/tls/self-signed.key.der").to_vec(),
        ));
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.accept(tcp).await.is_ok()
        });
        let to = Target::parse(&format!("https://127.0.0.1:{port}/mcp")).unwrap();
        let err = Client::new()
            .unwrap()
            .send(Method::POST, &to, HeaderMap::new(), "{}")
            .await
            .err()
            .expect("a self-signed certificate is refused");
        assert!(err.to_string().contains("certificate"), "{err}");
        assert!(!server.await.unwrap(), "the handshake never completed");
    }

    /// A plain HTTP/1.1 server on threads that answers every request `ok` and keeps the
    /// connection open; returns its address and the count of connections it accepted.
    fn counting_server() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n) = conn.read(&mut chunk) {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Bodiless requests: one answer per complete head.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let _ =
                                conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// Two sequential requests through `client`, each answer read to its end.
    async fn twice(client: &Client, to: &Target) {
        for _ in 0..2 {
            let mut r = client
                .send(Method::GET, to, HeaderMap::new(), Bytes::new())
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            while r.chunk().await.unwrap().is_some() {}
        }
    }

    /// Each of the gateway's cores keeps connections of its own (their driver tasks run on
    /// its thread); other threads share one pool. A second core does not take the first
    /// core's idle connection, which a single shared pool would hand it.
    #[test]
    fn each_core_sends_through_a_pool_of_its_own() {
        let (addr, accepted) = counting_server();
        let client = Client::new().unwrap();
        let to = Target::parse(&format!("http://{addr}/")).unwrap();
        let accepted_now = || accepted.load(std::sync::atomic::Ordering::SeqCst);
        // A core: sends twice, then keeps its runtime (and its idle connection) alive.
        let core = |client: Client, to: Target| {
            let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let _cores = crate::http::Cores::start(0).unwrap();
                    twice(&client, &to).await;
                    sent_tx.send(()).unwrap();
                    let _ = stop_rx.await;
                });
            });
            sent_rx.recv().unwrap();
            (stop_tx, thread)
        };
        let a = core(client.clone(), to.clone());
        assert_eq!(
            accepted_now(),
            1,
            "a core's two requests share one connection"
        );
        let b = core(client.clone(), to.clone());
        assert_eq!(accepted_now(), 2, "a second core opens its own");
        // A thread that is not a core: the shared pool.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(twice(&client, &to));
        assert_eq!(accepted_now(), 3);
        for (stop, thread) in [a, b] {
            let _ = stop.send(());
            thread.join().unwrap();
        }
    }
}
