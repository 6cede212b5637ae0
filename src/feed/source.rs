//! Where a feed comes from: a file (read by [`super::load_file`], watched by the reloader)
//! or an `http://` / `https://` URL, polled here. This is the transport in front of the
//! "feed" arrow: bytes fetched off the query path, then the same [`super::load_slice`] as a
//! file, then the reloader's checks.
//!
//! Polling, as a fleet of instances pulling from one URL needs it:
//! - conditional requests: the `ETag` and `Last-Modified` of the last body that loaded go
//!   back as `If-None-Match` and `If-Modified-Since`; `304 Not Modified` costs no parse,
//!   and neither does a body equal to the last one (a server that sends no validators);
//! - a random jitter of up to 10 % of the interval on every wait, so that instances started
//!   together do not poll in lockstep;
//! - a request timeout (connecting at most 5 s of it) and a body limit ([`MAX_BODY`]);
//! - redirects followed only to the same scheme, at most [`MAX_REDIRECTS`]: an `https://`
//!   feed redirected to `http://` would let anyone on the path serve the pool's servers, and
//!   a `file:` or other scheme is never fetched;
//! - exponential backoff on errors (no connection, a status other than 2xx or 304, a body
//!   too large, a body that is not a feed): from [`PollOptions::first_retry`], doubling up to
//!   [`PollOptions::max_retry`], back to the interval after a success.
//!
//! The HTTP client is blocking (ureq), so polling runs on a thread of its own ([`Poller`]):
//! the tokio runtime that answers queries never waits for the network, and shutting down
//! never waits for a request in flight.
//!
//! Why validators are kept only for a body that loaded: a body that failed to parse must be
//! fetched whole again (a 304 for it would read as "unchanged and fine"), while a feed that
//! parsed but was refused by the reloader's guard is not fetched again until it changes,
//! so it is refused and logged once, not on every poll.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Feed, FeedError, load_slice};

/// A feed source as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSource {
    /// A JSON file, watched for changes.
    File(PathBuf),
    /// An `http://` or `https://` URL, polled.
    Url(String),
}

impl FeedSource {
    /// Reads a `--feed` value: a URL if it starts with `http://` or `https://` (in any
    /// case), a file path otherwise.
    pub fn from_arg(arg: &Path) -> FeedSource {
        match arg.to_str() {
            Some(text) if is_url(text) => FeedSource::Url(text.to_owned()),
            _ => FeedSource::File(arg.to_owned()),
        }
    }
}

fn is_url(text: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        text.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    })
}

impl fmt::Display for FeedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedSource::File(path) => write!(f, "{}", path.display()),
            FeedSource::Url(url) => f.write_str(url),
        }
    }
}

/// How a feed URL is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOptions {
    /// Time between requests while all is well (plus jitter).
    pub interval: Duration,
    /// Limit for a whole request, connecting and reading the body included.
    pub timeout: Duration,
    /// Largest body accepted, in bytes (after decompression).
    pub max_body: u64,
    /// Wait after the first failure; it doubles with each further one.
    pub first_retry: Duration,
    /// Longest wait after failures.
    pub max_retry: Duration,
}

/// The largest feed, file or body (after decompression): 64 MiB, about a million servers,
/// far above the NTP pool's feed (a few hundred KiB, 5,000 servers).
pub const MAX_FEED_BYTES: u64 = 64 << 20;

/// The default body limit: [`MAX_FEED_BYTES`].
pub const MAX_BODY: u64 = MAX_FEED_BYTES;

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;

impl PollOptions {
    /// Polls every `interval`; retries after 2 s, doubling up to 8 intervals; requests time
    /// out after 20 s; bodies up to [`MAX_BODY`].
    pub fn every(interval: Duration) -> PollOptions {
        let max_retry = interval.saturating_mul(8);
        PollOptions {
            interval,
            timeout: Duration::from_secs(20),
            max_body: MAX_BODY,
            first_retry: Duration::from_secs(2).min(max_retry),
            max_retry,
        }
    }
}

impl Default for PollOptions {
    /// Every 30 seconds.
    fn default() -> PollOptions {
        PollOptions::every(Duration::from_secs(30))
    }
}

/// When to make the next request: the interval while all is well, exponential backoff
/// after failures; jitter on every wait. Pure: the caller passes the random number.
#[derive(Debug, Clone)]
pub struct Schedule {
    options: PollOptions,
    /// Failures in a row since the last success.
    failures: u32,
}

impl Schedule {
    /// A schedule that starts as after a success.
    pub fn new(options: PollOptions) -> Schedule {
        Schedule {
            options,
            failures: 0,
        }
    }

    /// A request succeeded (a body that loaded, or 304): back to the interval.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// A request failed: wait longer next time.
    pub fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait before the next request; `random` in [0, 1] picks the jitter, up to 10 %
    /// of the interval.
    pub fn next_wait(&self, random: f64) -> Duration {
        let o = &self.options;
        let base = match self.failures {
            0 => o.interval,
            // 2^20 times any retry of a second or more is past every sensible cap.
            n => o
                .first_retry
                .saturating_mul(1 << (n - 1).min(20))
                .min(o.max_retry),
        };
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        base.saturating_add(o.interval.mul_f64(0.1 * random))
    }
}

/// What one request brought.
#[derive(Debug)]
pub enum Fetched {
    /// 304, or the same body as the last one that loaded: nothing to load.
    NotModified,
    /// A new body, loaded.
    Loaded(Feed),
}

/// Fetches a feed URL with conditional requests.
pub struct Fetcher {
    url: String,
    agent: ureq::Agent,
    max_body: u64,
    /// `ETag` of the last body that loaded, sent back as `If-None-Match`.
    etag: Option<String>,
    /// `Last-Modified` of the last body that loaded, sent back as `If-Modified-Since`.
    last_modified: Option<String>,
    /// Hash of the last body that loaded: the same body again is not loaded again.
    body_hash: Option<u64>,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("url", &self.url)
            .field("etag", &self.etag)
            .field("last_modified", &self.last_modified)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher for `url` with the timeout and body limit of `options`.
    pub fn new(url: &str, options: &PollOptions) -> Fetcher {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .timeout_connect(Some(options.timeout.min(Duration::from_secs(5))))
            // 304 and error statuses are answers to look at, not transport errors.
            .http_status_as_error(false)
            // Redirects are followed in `fetch`, which checks the scheme of each.
            .max_redirects(0)
            .user_agent(concat!("pooldns/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Fetcher {
            url: url.to_owned(),
            agent,
            max_body: options.max_body,
            etag: None,
            last_modified: None,
            body_hash: None,
        }
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Forgets the validators, so that the next request fetches the body whatever it is
    /// (SIGHUP: a forced reload).
    pub fn forget_validators(&mut self) {
        self.etag = None;
        self.last_modified = None;
        self.body_hash = None;
    }

    /// Makes one request, conditional when a body loaded before, and loads a new body with
    /// [`load_slice`]. Blocks for up to the timeout.
    pub fn fetch(&mut self) -> Result<Fetched, FeedError> {
        let conditional = self.etag.is_some() || self.last_modified.is_some();
        let mut url = self.url.clone();
        let mut redirects = 0;
        let mut response = loop {
            let mut request = self.agent.get(&url);
            if let Some(etag) = &self.etag {
                request = request.header("If-None-Match", etag);
            }
            if let Some(date) = &self.last_modified {
                request = request.header("If-Modified-Since", date);
            }
            let response = request.call().map_err(|e| FeedError::Fetch {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
            if !response.status().is_redirection() || response.status().as_u16() == 304 {
                break response;
            }
            let refuse = |reason: String| FeedError::Fetch {
                url: self.url.clone(),
                reason,
            };
            let Some(location) = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
            else {
                return Err(refuse(format!(
                    "HTTP status {} without a Location",
                    response.status().as_u16()
                )));
            };
            if redirects == MAX_REDIRECTS {
                return Err(refuse(format!("more than {MAX_REDIRECTS} redirects")));
            }
            redirects += 1;
            url = redirect_target(&url, location).map_err(refuse)?;
        };
        let status = response.status().as_u16();
        if status == 304 && conditional {
            return Ok(Fetched::NotModified);
        }
        if !(200..300).contains(&status) {
            return Err(FeedError::Status {
                url: self.url.clone(),
                status,
            });
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (etag, last_modified) = (header("etag"), header("last-modified"));
        let body = self.read_body(response.body_mut())?;
        let hash = hash(&body);
        if self.body_hash == Some(hash) {
            self.etag = etag;
            self.last_modified = last_modified;
            return Ok(Fetched::NotModified);
        }
        let feed = load_slice(&self.url, &body)?;
        self.etag = etag;
        self.last_modified = last_modified;
        self.body_hash = Some(hash);
        Ok(Fetched::Loaded(feed))
    }

    /// Reads the body up to the limit, counted both on the wire and decompressed (a small
    /// gzip body can grow a thousandfold).
    fn read_body(&self, body: &mut ureq::Body) -> Result<Vec<u8>, FeedError> {
        let too_large = || FeedError::TooLarge {
            url: self.url.clone(),
            limit: self.max_body,
        };
        if body.content_length().is_some_and(|n| n > self.max_body) {
            return Err(too_large());
        }
        let reader = body.with_config().limit(self.max_body).reader();
        let mut bytes = Vec::new();
        reader
            .take(self.max_body.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| match ureq::Error::from(e) {
                ureq::Error::BodyExceedsLimit(_) => too_large(),
                e => FeedError::Fetch {
                    url: self.url.clone(),
                    reason: format!("reading the body: {e}"),
                },
            })?;
        if bytes.len() as u64 > self.max_body {
            return Err(too_large());
        }
        Ok(bytes)
    }
}

/// Reads the file at `path` whole if it is at most `limit` bytes; a larger one is refused
/// unread, with an error (kind `FileTooLarge`) that says "{what} files are limited to …".
/// For the feed ([`MAX_FEED_BYTES`]), and the configuration and demand files.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> std::io::Result<Vec<u8>> {
    let too_large = |size: String| {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("{size}, but {what} files are limited to {}", mib(limit)),
        )
    };
    let file = std::fs::File::open(path)?;
    // The length first, so that a huge file is refused without reading it; then the read
    // itself is bounded, for a file that grows meanwhile or has no length (a pipe).
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(mib(len)));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(format!("more than {}", mib(limit))));
    }
    Ok(bytes)
}

/// A size for people: "64 MiB", "300 bytes", "1572864 bytes (1.5 MiB)".
fn mib(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes < MIB {
        format!("{bytes} bytes")
    } else if bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes ({:.1} MiB)", bytes as f64 / MIB as f64)
    }
}

/// Where a redirect from `from` to `location` (RFC 9110 §10.2.2: absolute, or relative to
/// `from`) goes, if it keeps the scheme of `from`; otherwise why it is refused.
fn redirect_target(from: &str, location: &str) -> Result<String, String> {
    // `from` is the feed URL (http:// or https://, FeedSource::from_arg) or a target made
    // here, so it has a scheme.
    let Some((scheme, rest)) = from.split_once("://") else {
        return Err(format!("{from} is not a URL"));
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = &from[..scheme.len() + 3 + authority_end];
    // RFC 3986 §3.1: a scheme is a letter, then letters, digits, "+", "-" and ".".
    let location_scheme = location.split_once(':').map(|(s, _)| s).filter(|s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let target = match location_scheme {
        Some(other) if !other.eq_ignore_ascii_case(scheme) => {
            return Err(format!(
                "redirected to {location}: a redirect to another scheme than {scheme}: is refused"
            ));
        }
        Some(_) => location.to_owned(),
        None if location.starts_with("//") => format!("{scheme}:{location}"),
        None if location.starts_with('/') => format!("{origin}{location}"),
        None => {
            // A relative path: beside the last segment of `from`'s path.
            let path = &from[origin.len()..];
            let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            let dir = if dir.is_empty() { "/" } else { dir };
            format!("{origin}{dir}{location}")
        }
    };
    Ok(target)
}

fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// What the poller hands the reloader: a feed that loaded, or why the last request failed.
pub type Polled = Result<Feed, FeedError>;

/// Polls a feed URL on a thread of its own and sends what it gets to the reloader. The
/// thread ends when the poller is dropped (at its next wake-up) or the receiver is gone.
#[derive(Debug)]
pub struct Poller {
    /// Wakes the thread for a request now, without validators.
    now: std_mpsc::Sender<()>,
}

impl Poller {
    /// Starts polling with `fetcher` (whose validators are those of the last body that
    /// loaded); the first request is one interval from now.
    pub fn start(
        fetcher: Fetcher,
        options: PollOptions,
        results: mpsc::Sender<Polled>,
    ) -> std::io::Result<Poller> {
        let (now, wake) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("feed-poller".into())
            .spawn(move || poll(fetcher, Schedule::new(options), wake, results))?;
        Ok(Poller { now })
    }

    /// Asks for a request now, fetching the body whatever it is (SIGHUP).
    pub fn poll_now(&self) {
        let _ = self.now.send(());
    }
}

fn poll(
    mut fetcher: Fetcher,
    mut schedule: Schedule,
    wake: std_mpsc::Receiver<()>,
    results: mpsc::Sender<Polled>,
) {
    use rand::RngExt;
    let mut rng = rand::rng();
    loop {
        let wait = schedule.next_wait(rng.random_range(0.0..=1.0));
        match wake.recv_timeout(wait) {
            Ok(()) => fetcher.forget_validators(),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let result = match fetcher.fetch() {
            Ok(Fetched::NotModified) => {
                tracing::debug!(url = fetcher.url(), "feed not modified");
                schedule.succeeded();
                continue;
            }
            Ok(Fetched::Loaded(feed)) => {
                schedule.succeeded();
                Ok(feed)
            }
            Err(e) => {
                schedule.failed();
                tracing::debug!(
                    url = fetcher.url(),
                    failures = schedule.failures(),
                    "feed request failed; backing off"
                );
                Err(e)
            }
        };
        // Blocks while the reloader is busy: one result at a time, none lost.
        if results.blocking_send(result).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths_by_their_scheme() {
        for url in [
            "http://feeds.example/servers.json",
            "https://feeds.example/servers.json",
            "HTTPS://feeds.example/",
        ] {
            assert_eq!(
                FeedSource::from_arg(Path::new(url)),
                FeedSource::Url(url.to_owned())
            );
        }
        for path in [
            "data/servers.json",
            "/srv/http/servers.json",
            "http",
            "ftp://x/y",
        ] {
            assert_eq!(
                FeedSource::from_arg(Path::new(path)),
                FeedSource::File(PathBuf::from(path))
            );
        }
    }

    #[test]
    fn backoff_doubles_from_the_first_retry_up_to_the_cap_and_resets_on_success() {
        let mut s = Schedule::new(PollOptions::every(Duration::from_secs(30)));
        let secs = |s: &Schedule| s.next_wait(0.0).as_secs();
        assert_eq!(secs(&s), 30);
        let mut waits = Vec::new();
        for _ in 0..10 {
            s.failed();
            waits.push(secs(&s));
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 240, 240, 240]);
        s.succeeded();
        assert_eq!(secs(&s), 30);
        for _ in 0..1000 {
            s.failed();
        }
        assert_eq!(secs(&s), 240);
    }

    #[test]
    fn jitter_adds_up_to_a_tenth_of_the_interval_to_every_wait() {
        let mut s = Schedule::new(PollOptions::every(Duration::from_secs(30)));
        assert_eq!(s.next_wait(1.0), Duration::from_secs(33));
        assert_eq!(s.next_wait(0.5), Duration::from_millis(31_500));
        s.failed();
        assert_eq!(s.next_wait(1.0), Duration::from_secs(5));
        // Out-of-range randomness cannot stretch the wait.
        assert_eq!(s.next_wait(7.0), Duration::from_secs(5));
        assert_eq!(s.next_wait(f64::NAN), Duration::from_secs(2));
    }

    #[test]
    fn a_short_interval_caps_the_first_retry_too() {
        let s = PollOptions::every(Duration::from_millis(100));
        assert_eq!(s.max_retry, Duration::from_millis(800));
        assert_eq!(s.first_retry, Duration::from_millis(800));
    }

    #[test]
    fn redirects_resolve_relative_to_the_url_and_keep_its_scheme() {
        let from = "https://feeds.example:8443/pool/servers.json?x=1";
        for (location, to) in [
            (
                "https://mirror.example/s.json",
                "https://mirror.example/s.json",
            ),
            (
                "HTTPS://mirror.example/s.json",
                "HTTPS://mirror.example/s.json",
            ),
            ("//mirror.example/s.json", "https://mirror.example/s.json"),
            ("/other.json", "https://feeds.example:8443/other.json"),
            (
                "v2/servers.json",
                "https://feeds.example:8443/pool/v2/servers.json",
            ),
        ] {
            assert_eq!(
                redirect_target(from, location).as_deref(),
                Ok(to),
                "{location}"
            );
        }
        assert_eq!(
            redirect_target("http://feeds.example", "servers.json").as_deref(),
            Ok("http://feeds.example/servers.json")
        );
        for location in [
            "http://feeds.example/servers.json",
            "file:///etc/passwd",
            "data:application/json,{}",
            "javascript:x",
        ] {
            let why = redirect_target(from, location).unwrap_err();
            assert_eq!(
                why,
                format!(
                    "redirected to {location}: a redirect to another scheme than https: is \
                     refused"
                )
            );
        }
    }

    #[test]
    fn files_over_the_limit_are_refused_unread_with_their_size_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_bounded(&path, 10, "feed").unwrap(), b"0123456789");
        let e = read_bounded(&path, 9, "feed").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(
            e.to_string(),
            "10 bytes, but feed files are limited to 9 bytes"
        );
        std::fs::File::create(&path)
            .unwrap()
            .set_len(3 << 29)
            .unwrap();
        let e = read_bounded(&path, MAX_FEED_BYTES, "feed").unwrap_err();
        assert_eq!(
            e.to_string(),
            "1536 MiB, but feed files are limited to 64 MiB"
        );
        assert_eq!(mib((3 << 20) / 2), "1572864 bytes (1.5 MiB)");
    }
}
