//! An HTTP proxy in front of moto: it records every request, and can throttle one IAM action or
//! hold it until the test lets it through.

use super::moto;

/// One request a [`Proxy`] passed to moto: the request line and the body.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: String,
    /// The region the request was signed for (SigV4's credential scope).
    pub region: String,
}

/// An HTTP proxy in front of moto that records every request, and can answer the first
/// `throttles` IAM requests whose body holds `Action=<action>` with IAM's throttling error, as AWS
/// does under load — or answer STS for one key as a lagging STS would ([`Proxy::answer_sts_for`]),
/// or hold every such request until [`Proxy::release`] ([`Proxy::holding`]).
pub struct Proxy {
    pub endpoint: String,
    pub throttled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    /// A key id and the GetCallerIdentity answer to give for it.
    sts_answer: std::sync::Arc<std::sync::Mutex<Option<(String, String)>>>,
    /// The requests held: each one's body, and what lets it through.
    held: Held,
}

type Held = std::sync::Arc<std::sync::Mutex<Vec<(String, std::sync::mpsc::Sender<()>)>>>;

impl Proxy {
    /// A proxy that only records.
    pub fn recording() -> Self {
        Self::start("", 0, "")
    }

    pub fn throttling(action: &'static str, throttles: usize) -> Self {
        Self::start(action, throttles, "")
    }

    /// A proxy that holds every IAM request with `Action=<action>` (each waits on its own, the
    /// others pass) until [`Proxy::release`] names it: an IAM call in progress for as long as the
    /// test wants.
    pub fn holding(action: &'static str) -> Self {
        Self::start("", 0, action)
    }

    fn start(action: &'static str, throttles: usize, hold: &'static str) -> Self {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = moto().endpoint.trim_start_matches("http://").to_owned();
        let throttled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sts_answer = std::sync::Arc::new(std::sync::Mutex::new(None::<(String, String)>));
        let held = Held::default();
        let (count, log, canned, holding) = (
            throttled.clone(),
            requests.clone(),
            sts_answer.clone(),
            held.clone(),
        );
        std::thread::spawn(move || {
            for mut client in listener.incoming().map_while(Result::ok) {
                let Some(request) = read_request(&mut client) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&request).into_owned();
                let line: Vec<&str> = text.lines().next().unwrap_or_default().split(' ').collect();
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                log.lock().unwrap().push(Recorded {
                    method: line.first().copied().unwrap_or_default().to_owned(),
                    path: line.get(1).copied().unwrap_or_default().to_owned(),
                    body: body.to_owned(),
                    region: signed_region(&text).to_owned(),
                });
                let canned_answer = canned.lock().unwrap().clone().filter(|(key_id, _)| {
                    body.contains("Action=GetCallerIdentity")
                        && text.contains(&format!("Credential={key_id}/"))
                });
                if let Some((_, answer)) = canned_answer {
                    let _ = write!(
                        client,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    continue;
                }
                let is_target = !action.is_empty() && body.contains(&format!("Action={action}"));
                if is_target && count.load(Ordering::SeqCst) < throttles {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>";
                    let _ = write!(
                        client,
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    continue;
                }
                if !hold.is_empty() && body.contains(&format!("Action={hold}")) {
                    let (release, released) = std::sync::mpsc::channel();
                    holding.lock().unwrap().push((body.to_owned(), release));
                    let upstream = upstream.clone();
                    std::thread::spawn(move || {
                        // A proxy dropped unreleased closes the connection instead.
                        if released.recv().is_ok() {
                            forward(&upstream, &request, &mut client);
                        }
                    });
                    continue;
                }
                forward(&upstream, &request, &mut client);
            }
        });
        Self {
            endpoint,
            throttled,
            requests,
            sts_answer,
            held,
        }
    }

    /// The bodies of the requests held now.
    pub fn held(&self) -> Vec<String> {
        let held = self.held.lock().unwrap();
        held.iter().map(|(body, _)| body.clone()).collect()
    }

    /// Lets through the held requests whose body holds `text`.
    pub fn release(&self, text: &str) {
        let mut held = self.held.lock().unwrap();
        for (_, release) in held.extract_if(.., |(body, _)| body.contains(text)) {
            let _ = release.send(());
        }
    }

    /// From now on, answers GetCallerIdentity signed by `key_id` itself, naming the scoped user
    /// `arn` (`user_id`, account 123456789012): an STS that has not yet heard the key was deleted.
    pub fn answer_sts_for(&self, key_id: &str, arn: &str, user_id: &str) {
        let answer = format!(
            r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>{arn}</Arn><UserId>{user_id}</UserId><Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#
        );
        *self.sts_answer.lock().unwrap() = Some((key_id.to_owned(), answer));
    }

    /// The requests recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// The region in a SigV4 `Authorization: … Credential=KEY/DATE/REGION/SERVICE/…` header.
fn signed_region(request: &str) -> &str {
    request
        .split_once("Credential=")
        .and_then(|(_, scope)| scope.split('/').nth(2))
        .unwrap_or_default()
}

/// Passes `request` to moto and its answer back to `client`.
fn forward(upstream: &str, request: &[u8], client: &mut std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut server = std::net::TcpStream::connect(upstream).unwrap();
    server.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    let _ = client.write_all(&response);
}

/// One HTTP/1.1 request (headers and a Content-Length body), with `Connection: close` forced so
/// every request comes on its own connection.
fn read_request(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let headers = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let length: usize = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let mut head: Vec<String> = headers
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_owned)
        .collect();
    head.push("Connection: close".to_owned());
    let mut request = format!("{}\r\n\r\n", head.join("\r\n")).into_bytes();
    request.extend_from_slice(&buffer[header_end..]);
    Some(request)
}
