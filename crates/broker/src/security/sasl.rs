//! SASL on a connection (SaslHandshake v1, then SaslAuthenticate v0-v2,
//! KIP-152): the mechanisms a listener offers, the state of one
//! connection's exchange, and the users' credentials in the catalog.
//!
//! Until a connection has authenticated, only ApiVersions, SaslHandshake
//! and SaslAuthenticate are served on it (the caller closes the connection
//! on anything else, as Kafka does). A failed login answers
//! SASL_AUTHENTICATION_FAILED, then the connection is closed. Passwords
//! and SCRAM messages are never logged.

use super::scram::{ClientFirst, Credential, Mechanism, ScramError, ServerExchange};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_catalog::{Catalog, CredentialRecord, CredentialStore};
use std::sync::Arc;

/// How long a failed login waits before its answer.
const FAILED_LOGIN_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// A SASL mechanism a listener may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("PLAIN") {
            return Some(Self::Plain);
        }
        Mechanism::parse(s).map(Self::Scram)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(m) => m.name(),
        }
    }
}

/// Parses `PLAIN,SCRAM-SHA-256,...`.
pub fn parse_mechanisms(s: &str) -> Result<Vec<SaslMechanism>, String> {
    let mut out = Vec::new();
    for m in s.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let parsed = SaslMechanism::parse(m).ok_or_else(|| {
            format!("unknown SASL mechanism '{m}' (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
        })?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    if out.is_empty() {
        return Err("no SASL mechanism given".into());
    }
    Ok(out)
}

/// Converts between the catalog's records and SCRAM credentials.
pub fn to_record(user: &str, c: &Credential) -> CredentialRecord {
    CredentialRecord {
        user: user.to_string(),
        mechanism: c.mechanism.name().to_string(),
        salt: B64.encode(&c.salt),
        iterations: c.iterations as i64,
        stored_key: B64.encode(&c.stored_key),
        server_key: B64.encode(&c.server_key),
        updated_ms: sluice_storage::now_ms(),
    }
}

pub fn from_record(r: &CredentialRecord) -> Option<Credential> {
    Some(Credential {
        mechanism: Mechanism::parse(&r.mechanism)?,
        salt: B64.decode(&r.salt).ok()?,
        iterations: u32::try_from(r.iterations).ok()?,
        stored_key: B64.decode(&r.stored_key).ok()?,
        server_key: B64.decode(&r.server_key).ok()?,
    })
}

/// The users, as the catalog holds them.
pub struct Users {
    catalog: Arc<Catalog>,
}

impl Users {
    pub fn new(catalog: Arc<Catalog>) -> Arc<Self> {
        Arc::new(Self { catalog })
    }

    /// The user's credentials (none on a catalog error, logged).
    async fn credentials(&self, user: &str) -> Vec<Credential> {
        let (catalog, u) = (self.catalog.clone(), user.to_string());
        match tokio::task::spawn_blocking(move || catalog.credentials(&u)).await {
            Ok(Ok(rows)) => rows.iter().filter_map(from_record).collect(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading SASL credentials failed");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "the credentials task failed");
                Vec::new()
            }
        }
    }

    /// Whether `password` is `user`'s (PLAIN logins, HTTP Basic
    /// authentication). One credential is enough to check a password;
    /// checking with the cheapest keeps it fast. PBKDF2 takes milliseconds,
    /// so it runs off the async workers; an unknown user is checked against
    /// a made-up credential, so it takes as long as a known one.
    pub async fn check_password(&self, user: &str, password: &str) -> bool {
        let creds = self.credentials(user).await;
        let check = creds
            .iter()
            .min_by_key(|c| (c.iterations, c.mechanism))
            .cloned()
            .map(|c| (c, true))
            .unwrap_or_else(|| {
                let m = Mechanism::Sha256;
                let fake = Credential::from_salted(
                    m,
                    &[0u8; 32],
                    vec![0u8; 24],
                    super::scram::DEFAULT_ITERATIONS,
                );
                (fake, false)
            });
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            let (credential, known) = check;
            credential.verify_password(&password) && known
        })
        .await
        .unwrap_or(false)
    }
}

/// Where one connection's authentication stands.
enum State {
    Start,
    Chosen(SaslMechanism),
    ScramSent(ServerExchange),
    Done(String),
    Failed,
}

/// One connection's SASL exchange.
pub struct Session {
    users: Arc<Users>,
    offered: Arc<Vec<SaslMechanism>>,
    state: State,
    /// SaslHandshake v0: the tokens follow as bare length-prefixed frames,
    /// not SaslAuthenticate requests.
    raw_tokens: bool,
    /// The user this connection authenticated as (kept while it
    /// re-authenticates).
    user: Option<String>,
    /// KIP-368: how long a login lasts; the client re-authenticates on the
    /// same connection before then, or the connection is closed.
    lifetime: Option<std::time::Duration>,
    expires: Option<tokio::time::Instant>,
}

/// What a SaslAuthenticate step led to.
pub struct Step {
    pub response: SaslAuthenticateResponse,
    /// The connection must be closed once the response is sent.
    pub close: bool,
}

impl Session {
    pub fn new(
        users: Arc<Users>,
        offered: Arc<Vec<SaslMechanism>>,
        lifetime: Option<std::time::Duration>,
    ) -> Self {
        Self {
            users,
            offered,
            state: State::Start,
            raw_tokens: false,
            user: None,
            lifetime,
            expires: None,
        }
    }

    /// Whether the login's lifetime has run out without a re-authentication.
    pub fn expired(&self) -> bool {
        self.expires
            .is_some_and(|e| tokio::time::Instant::now() >= e)
    }

    /// Whether the next frames are bare SASL tokens (after a v0 handshake,
    /// until authenticated).
    pub fn expects_raw_tokens(&self) -> bool {
        self.raw_tokens && !self.authenticated()
    }

    /// Whether the connection has logged in (also while it re-authenticates).
    pub fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// The authenticated principal (`User:NAME`), once there is one.
    pub fn principal(&self) -> Option<String> {
        self.user.as_ref().map(|u| format!("User:{u}"))
    }

    pub fn handshake(&mut self, req: &SaslHandshakeRequest, version: i16) -> SaslHandshakeResponse {
        let mut resp = SaslHandshakeResponse::default();
        resp.mechanisms = self
            .offered
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        // A new handshake starts a login, or (KIP-368) a re-authentication
        // of a connection that logged in, framed (v1) only.
        let reauth = matches!(self.state, State::Done(_)) && version >= 1;
        if !matches!(self.state, State::Start) && !reauth {
            resp.error_code = ResponseError::IllegalSaslState.code();
            return resp;
        }
        match SaslMechanism::parse(req.mechanism.as_str()).filter(|m| self.offered.contains(m)) {
            Some(m) => {
                self.state = State::Chosen(m);
                self.raw_tokens = version == 0;
            }
            None => resp.error_code = ResponseError::UnsupportedSaslMechanism.code(),
        }
        resp
    }

    pub async fn authenticate(&mut self, req: &SaslAuthenticateRequest, version: i16) -> Step {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let outcome: Result<(State, Bytes), (ResponseError, String)> = match state {
            State::Chosen(SaslMechanism::Plain) => self.plain(&req.auth_bytes).await,
            State::Chosen(SaslMechanism::Scram(m)) => self.scram_first(m, &req.auth_bytes).await,
            State::ScramSent(ex) => match ex.finish(&req.auth_bytes) {
                Ok(server_final) => Ok((
                    State::Done(ex.user().to_string()),
                    Bytes::from(server_final.into_bytes()),
                )),
                Err(e) => Err(scram_failure(e, ex.user())),
            },
            State::Start | State::Done(_) | State::Failed => Err((
                ResponseError::IllegalSaslState,
                "SaslAuthenticate without a SaslHandshake first".into(),
            )),
        };
        // A re-authentication must be the same user (as Kafka requires).
        let outcome = match outcome {
            Ok((State::Done(user), _)) if self.user.as_ref().is_some_and(|prev| *prev != user) => {
                Err((
                    ResponseError::SaslAuthenticationFailed,
                    "re-authentication must use the same user".to_string(),
                ))
            }
            other => other,
        };
        let mut response = SaslAuthenticateResponse::default();
        match outcome {
            Ok((state, bytes)) => {
                if let State::Done(user) = &state {
                    tracing::debug!(user, "SASL authentication succeeded");
                    self.user = Some(user.clone());
                    if let Some(lifetime) = self.lifetime {
                        self.expires = Some(tokio::time::Instant::now() + lifetime);
                        if version >= 1 {
                            response.session_lifetime_ms =
                                lifetime.as_millis().min(i64::MAX as u128) as i64;
                        }
                    }
                }
                self.state = state;
                response.auth_bytes = bytes;
                Step {
                    response,
                    close: false,
                }
            }
            Err((code, message)) => {
                sluice_observe::metrics().sasl_failures.inc();
                // Like Kafka's connection.failed.authentication.delay.ms: a
                // failed login is answered late, which slows password
                // guessing and clients that retry in a tight loop.
                tokio::time::sleep(FAILED_LOGIN_DELAY).await;
                response.error_code = code.code();
                response.error_message = Some(StrBytes::from_string(message));
                Step {
                    response,
                    close: true,
                }
            }
        }
    }

    /// One bare token after a v0 handshake: the bare reply frame (length
    /// prefix included), or `None` when authentication failed (the
    /// connection is closed: a bare exchange has no way to say why).
    pub async fn raw_token(&mut self, token: Bytes) -> Option<bytes::BytesMut> {
        let mut req = SaslAuthenticateRequest::default();
        req.auth_bytes = token;
        let step = self.authenticate(&req, 0).await;
        if step.close {
            return None;
        }
        let bytes = step.response.auth_bytes;
        let mut out = bytes::BytesMut::with_capacity(4 + bytes.len());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
        Some(out)
    }

    async fn plain(&self, token: &[u8]) -> Result<(State, Bytes), (ResponseError, String)> {
        // authzid NUL authcid NUL passwd (RFC 4616)
        let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
        let [authzid, user, password] = parts[..] else {
            return Err(failed("malformed PLAIN token"));
        };
        let (Ok(authzid), Ok(user), Ok(password)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(user),
            std::str::from_utf8(password),
        ) else {
            return Err(failed("malformed PLAIN token"));
        };
        if user.is_empty() || (!authzid.is_empty() && authzid != user) {
            return Err(failed("authorization id must be empty or the user"));
        }
        let ok = self.users.check_password(user, password).await;
        if ok {
            Ok((State::Done(user.to_string()), Bytes::new()))
        } else {
            tracing::info!(user, mechanism = "PLAIN", "SASL authentication failed");
            Err(failed("Authentication failed: invalid credentials"))
        }
    }

    async fn scram_first(
        &self,
        m: Mechanism,
        token: &[u8],
    ) -> Result<(State, Bytes), (ResponseError, String)> {
        let first = ClientFirst::parse(token).map_err(|e| scram_failure(e, ""))?;
        let credential = self
            .users
            .credentials(&first.user)
            .await
            .into_iter()
            .find(|c| c.mechanism == m);
        let (ex, server_first) =
            ServerExchange::start(m, first, credential).map_err(|e| scram_failure(e, ""))?;
        Ok((State::ScramSent(ex), Bytes::from(server_first.into_bytes())))
    }
}

fn failed(msg: &str) -> (ResponseError, String) {
    (ResponseError::SaslAuthenticationFailed, msg.to_string())
}

fn scram_failure(e: ScramError, user: &str) -> (ResponseError, String) {
    if !user.is_empty() {
        tracing::info!(user, reason = %e, "SASL/SCRAM authentication failed");
    }
    match e {
        ScramError::Failed => failed("Authentication failed: invalid credentials"),
        other => (ResponseError::SaslAuthenticationFailed, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_lists() {
        assert_eq!(
            parse_mechanisms("PLAIN, scram-sha-512,PLAIN").unwrap(),
            vec![
                SaslMechanism::Plain,
                SaslMechanism::Scram(Mechanism::Sha512)
            ]
        );
        assert!(parse_mechanisms("GSSAPI").is_err());
        assert!(parse_mechanisms("").is_err());
    }

    #[test]
    fn records_round_trip() {
        let c = Credential::new(Mechanism::Sha512, "pw", 4096).unwrap();
        assert_eq!(from_record(&to_record("u", &c)), Some(c));
    }

    fn session() -> (Session, Arc<Catalog>) {
        let catalog = Catalog::in_memory().unwrap();
        for m in Mechanism::ALL {
            let c = Credential::new(m, "pencil", 4096).unwrap();
            catalog.put_credential(&to_record("alice", &c)).unwrap();
        }
        let offered = Arc::new(vec![
            SaslMechanism::Plain,
            SaslMechanism::Scram(Mechanism::Sha256),
        ]);
        (
            Session::new(Users::new(catalog.clone()), offered, None),
            catalog,
        )
    }

    fn handshake(s: &mut Session, m: &'static str) -> i16 {
        let mut req = SaslHandshakeRequest::default();
        req.mechanism = StrBytes::from_static_str(m);
        s.handshake(&req, 1).error_code
    }

    async fn auth(s: &mut Session, token: &[u8]) -> Step {
        let mut req = SaslAuthenticateRequest::default();
        req.auth_bytes = Bytes::copy_from_slice(token);
        s.authenticate(&req, 1).await
    }

    #[tokio::test]
    async fn plain_logins() {
        let (mut s, _) = session();
        assert_eq!(
            handshake(&mut s, "SCRAM-SHA-512"),
            ResponseError::UnsupportedSaslMechanism.code()
        );
        assert_eq!(handshake(&mut s, "PLAIN"), 0);
        assert_eq!(
            handshake(&mut s, "PLAIN"),
            ResponseError::IllegalSaslState.code()
        );
        let step = auth(&mut s, b"\0alice\0pencil").await;
        assert_eq!(step.response.error_code, 0);
        assert!(!step.close);
        assert_eq!(s.principal().as_deref(), Some("User:alice"));

        for bad in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0pencil",
            b"alice\0pencil",
            b"\0\0",
            b"\xff\0a\0b",
            b"x\0alice\0pencil",
        ] {
            let (mut s, _) = session();
            handshake(&mut s, "PLAIN");
            let step = auth(&mut s, bad).await;
            assert_eq!(
                step.response.error_code,
                ResponseError::SaslAuthenticationFailed.code(),
                "{bad:?}"
            );
            assert!(step.close);
            assert!(s.principal().is_none());
        }
    }

    #[tokio::test]
    async fn authenticate_before_handshake_is_refused() {
        let (mut s, _) = session();
        let step = auth(&mut s, b"\0alice\0pencil").await;
        assert_eq!(
            step.response.error_code,
            ResponseError::IllegalSaslState.code()
        );
        assert!(step.close);
    }
}
