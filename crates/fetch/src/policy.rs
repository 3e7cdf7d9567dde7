//! The one HTTP policy of nodeimg: what every request to a package
//! repository or a registry shares.
//!
//! - **TLS**: certificates are checked against the system's trust store
//!   (the platform verifier), for repositories (ureq) and registries
//!   (oci-client's reqwest) alike; an extra CA is added to the system's
//!   store, not to nodeimg.
//! - **Timeouts**: connecting gives up after [`HttpPolicy::connect_timeout`]
//!   (30 s); waiting for an answer, and then for each read of it, after
//!   [`HttpPolicy::read_timeout`] (60 s). An upload to a registry waits up to
//!   [`HttpPolicy::upload_read_timeout`] (300 s) for the registry's answer,
//!   which comes only once it has stored the whole blob.
//! - **Redirects**: up to [`HttpPolicy::max_redirects`] (10) are followed.
//! - **Retries**: a request that fails for a reason that may pass (the
//!   connection failed, broke or timed out; the server answered 5xx or 429)
//!   is made again, up to [`HttpPolicy::attempts`] (6) attempts in all,
//!   waiting [`HttpPolicy::first_wait`] (0.5 s) before the second, then twice
//!   as long each time up to [`HttpPolicy::max_wait`] (8 s): 0.5, 1, 2, 4,
//!   8 s, 15.5 s at most in all. Nothing else is retried: another 4xx, a
//!   name that does not resolve, a bad certificate, a file of the wrong size
//!   or checksum say the same the next time.
//! - **Identity**: the user agent `nodeimg/VERSION`; proxies from the usual
//!   `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` variables.

use std::time::Duration;

/// The user agent of every request.
pub const USER_AGENT: &str = concat!("nodeimg/", env!("CARGO_PKG_VERSION"));

/// Timeouts, redirects and retries of nodeimg's HTTP requests; see the
/// [module documentation](self) for what they mean. [`HttpPolicy::default`]
/// is the policy of every command; tests shorten the waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpPolicy {
    /// Connecting (TCP and TLS) gives up after this long.
    pub connect_timeout: Duration,
    /// The answer, and each read of its body, is waited for this long.
    pub read_timeout: Duration,
    /// [`HttpPolicy::read_timeout`] of requests that upload a blob.
    pub upload_read_timeout: Duration,
    /// Redirects followed.
    pub max_redirects: u32,
    /// Attempts of one request in all (1: no retry).
    pub attempts: u32,
    /// The wait before the second attempt; doubled for each further one.
    pub first_wait: Duration,
    /// The longest wait between two attempts.
    pub max_wait: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            upload_read_timeout: Duration::from_secs(300),
            max_redirects: 10,
            attempts: 6,
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(8),
        }
    }
}

/// An operation that failed for good: the last error and how many attempts
/// were made.
#[derive(Debug)]
pub struct Failed<E> {
    /// The error of the last attempt.
    pub error: E,
    /// Attempts made (1 when the first failure was final).
    pub attempts: u32,
}

/// What [`HttpPolicy::retry`] tells `waiting` before it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrying {
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// Attempts in all.
    pub of: u32,
    /// How long until the next.
    pub wait: Duration,
}

impl HttpPolicy {
    /// The ureq settings of this policy: timeouts, redirects, the user
    /// agent, the system's trust store, and statuses handled by the caller
    /// (a 404 is an answer, not an error). Retries are the caller's, with
    /// [`HttpPolicy::retry`].
    pub(crate) fn ureq_config(&self) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_recv_response(Some(self.read_timeout))
            .timeout_per_read(Some(self.read_timeout))
            .max_redirects(self.max_redirects)
            .user_agent(USER_AGENT)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            )
    }

    /// A ureq agent with [`HttpPolicy::ureq_config`].
    pub fn agent(&self) -> ureq::Agent {
        self.ureq_config().build().into()
    }

    /// The wait after failed attempt `attempt` (1 for the first).
    pub(crate) fn wait_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first_wait
            .saturating_mul(1u32 << doublings)
            .min(self.max_wait)
    }

    /// Run `op` until it succeeds, fails with an error `again` calls final,
    /// or the attempts are used up. Before each wait, `waiting` is told the
    /// error and the wait (to say so to the user).
    pub fn retry<T, E>(
        &self,
        mut op: impl FnMut() -> Result<T, E>,
        again: impl Fn(&E) -> bool,
        mut waiting: impl FnMut(&E, Retrying),
    ) -> Result<T, Failed<E>> {
        let of = self.attempts.max(1);
        let mut attempt = 1;
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(error) if attempt < of && again(&error) => {
                    let wait = self.wait_after(attempt);
                    waiting(&error, Retrying { attempt, of, wait });
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(error) => {
                    return Err(Failed {
                        error,
                        attempts: attempt,
                    })
                }
            }
        }
    }
}

/// Is an answer with this status worth another attempt (5xx, 429)?
pub fn transient_status(status: u16) -> bool {
    status >= 500 || status == 429
}

/// Is this ureq failure worth another attempt: the connection failed,
/// broke, stalled or timed out? A name that does not resolve, a bad URL,
/// a TLS failure or too many redirects are final.
pub fn transient_error(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::BodyStalled
            | ureq::Error::Protocol(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let p = HttpPolicy::default();
        let waits: Vec<f64> = (1..p.attempts)
            .map(|a| p.wait_after(a).as_secs_f64())
            .collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0, 8.0]);
        assert_eq!(p.wait_after(40), p.max_wait);
    }

    #[test]
    fn retries_stop_at_final_errors_and_at_the_last_attempt() {
        let p = HttpPolicy {
            first_wait: Duration::from_millis(1),
            ..HttpPolicy::default()
        };
        let mut calls = 0;
        let mut told = Vec::new();
        let r: Result<(), Failed<u16>> = p.retry(
            || {
                calls += 1;
                Err(503)
            },
            |s| transient_status(*s),
            |_, r| told.push(r.attempt),
        );
        let f = r.unwrap_err();
        assert_eq!((f.error, f.attempts, calls), (503, 6, 6));
        assert_eq!(told, [1, 2, 3, 4, 5]);
        let mut calls = 0;
        let f = p
            .retry(
                || -> Result<(), u16> {
                    calls += 1;
                    Err(if calls < 3 { 429 } else { 404 })
                },
                |s| transient_status(*s),
                |_, _| {},
            )
            .unwrap_err();
        assert_eq!((f.error, f.attempts), (404, 3));
    }
}
