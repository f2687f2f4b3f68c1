//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks
//! them: credentials are kept only as salt, iteration count, StoredKey and
//! ServerKey; the server side of the exchange checks a client's proof
//! against them; PLAIN passwords are checked against the same keys.
//!
//! Written here over `ring`'s PBKDF2, HMAC and digests because no
//! maintained crate offers a SCRAM server for both hashes that works from
//! stored keys (the `scram` crates do SHA-256 only and want the salted
//! password). Like Kafka, passwords are used as UTF-8 bytes (no SASLprep),
//! and SCRAM extensions (`tokenauth`) are accepted and ignored.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};
use std::num::NonZeroU32;

/// Iterations for new credentials (Kafka's minimum and default is 4096).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Bounds on the iterations accepted from the API.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

/// A SCRAM hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" => Some(Self::Sha256),
            "SCRAM-SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's ScramMechanism code (KIP-554): 1 = SHA-256, 2 = SHA-512.
    pub fn kafka_code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    pub fn from_kafka_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }

    /// Bytes of the mechanism's hash (and of its salted password).
    pub fn key_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// What the server keeps for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub mechanism: Mechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("authentication failed: invalid credentials")]
    Failed,
    #[error("iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")]
    Iterations,
    #[error("no random bytes available")]
    Random,
}

fn hmac_of(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(m.hmac(), key), data)
        .as_ref()
        .to_vec()
}

fn salted_password(m: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; m.key_len()];
    let n = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(m.pbkdf2(), n, salt, password, &mut out);
    out
}

fn random(n: usize) -> Result<Vec<u8>, ScramError> {
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ScramError::Random)?;
    Ok(b)
}

/// The salt shown for a user that does not exist: the same for the same
/// name on every attempt (a fresh random one each time would tell an
/// unknown user from a known one), from a secret made at start-up.
fn fake_salt(user: &str) -> Result<Vec<u8>, ScramError> {
    static SECRET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let secret = match SECRET.get() {
        Some(s) => s,
        None => {
            let fresh = random(32)?;
            SECRET.get_or_init(|| fresh)
        }
    };
    let mut salt = hmac_of(Mechanism::Sha256, secret, user.as_bytes());
    salt.truncate(24);
    Ok(salt)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Credential {
    /// Keys for `password` with a fresh random salt.
    pub fn new(m: Mechanism, password: &str, iterations: u32) -> Result<Self, ScramError> {
        Self::with_salt(m, password, random(24)?, iterations)
    }

    /// Keys for `password` with the given salt (KIP-554's AlterUserScramCredentials
    /// sends the salted password instead: see [`Credential::from_salted`]).
    pub fn with_salt(
        m: Mechanism,
        password: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Self, ScramError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations);
        }
        let salted = salted_password(m, password.as_bytes(), &salt, iterations);
        Ok(Self::from_salted(m, &salted, salt, iterations))
    }

    /// Keys from an already salted password.
    pub fn from_salted(m: Mechanism, salted: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let client_key = hmac_of(m, salted, b"Client Key");
        Self {
            mechanism: m,
            stored_key: digest::digest(m.digest(), &client_key).as_ref().to_vec(),
            server_key: hmac_of(m, salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// Whether `password` is this credential's password (PLAIN logins).
    pub fn verify_password(&self, password: &str) -> bool {
        let m = self.mechanism;
        let salted = salted_password(m, password.as_bytes(), &self.salt, self.iterations);
        let client_key = hmac_of(m, &salted, b"Client Key");
        same(
            digest::digest(m.digest(), &client_key).as_ref(),
            &self.stored_key,
        )
    }
}

/// The user named in a client-first message, with SCRAM's `=2C` and `=3D`
/// escapes undone.
fn unescape_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub user: String,
    gs2_header: String,
    bare: String,
    nonce: String,
}

impl ClientFirst {
    pub fn parse(msg: &[u8]) -> Result<Self, ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = msg.splitn(3, ',');
        let flag = parts.next().unwrap_or_default();
        let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let bare = parts
            .next()
            .ok_or(ScramError::Malformed("no client-first-message-bare"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(ScramError::Malformed("bad authzid"));
        }
        let mut user = None;
        let mut nonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match (i, attr.split_once('=')) {
                (0, Some(("n", v))) => user = Some(unescape_name(v)?),
                (1, Some(("r", v))) if !v.is_empty() => nonce = Some(v.to_string()),
                (0 | 1, _) => return Err(ScramError::Malformed("expected n=user,r=nonce")),
                // Extensions (Kafka's tokenauth=true) are ignored.
                _ => {}
            }
        }
        let user = user.ok_or(ScramError::Malformed("no user"))?;
        if user.is_empty() {
            return Err(ScramError::Malformed("empty user"));
        }
        Ok(Self {
            user,
            gs2_header: format!("{flag},{authzid},"),
            bare: bare.to_string(),
            nonce: nonce.ok_or(ScramError::Malformed("no nonce"))?,
        })
    }
}

/// The server's side of one exchange after the client-first message.
#[derive(Debug)]
pub struct ServerExchange {
    first: ClientFirst,
    server_first: String,
    nonce: String,
    /// `None` for an unknown user: the exchange goes on with a made-up
    /// salt and fails at the proof, so unknown and known users look alike.
    credential: Option<Credential>,
}

impl ServerExchange {
    /// Starts an exchange; returns it and the server-first message.
    pub fn start(
        m: Mechanism,
        first: ClientFirst,
        credential: Option<Credential>,
    ) -> Result<(Self, String), ScramError> {
        let credential = credential.filter(|c| c.mechanism == m);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (fake_salt(&first.user)?, DEFAULT_ITERATIONS),
        };
        let nonce = format!("{}{}", first.nonce, B64.encode(random(18)?));
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        Ok((
            Self {
                first,
                server_first: server_first.clone(),
                nonce,
                credential,
            },
            server_first,
        ))
    }

    pub fn user(&self) -> &str {
        &self.first.user
    }

    /// Checks the client-final message; returns the server-final message.
    pub fn finish(&self, msg: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            match attr.split_once('=') {
                Some(("c", v)) => binding = Some(v),
                Some(("r", v)) => nonce = Some(v),
                _ => {}
            }
        }
        let binding = binding.ok_or(ScramError::Malformed("no channel binding"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.first.gs2_header.as_bytes()) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        // Kafka accepts a client nonce that ends with the server's (older
        // librdkafka, Debian's 2.0.2 among them, sends the client nonce
        // followed by the whole server nonce), and so must we.
        if !nonce.is_some_and(|n| n.ends_with(self.nonce.as_str())) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let Some(c) = &self.credential else {
            return Err(ScramError::Failed);
        };
        let m = c.mechanism;
        if proof.len() != m.key_len() {
            return Err(ScramError::Failed);
        }
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let signature = hmac_of(m, &c.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !same(
            digest::digest(m.digest(), &client_key).as_ref(),
            &c.stored_key,
        ) {
            return Err(ScramError::Failed);
        }
        let server_signature = hmac_of(m, &c.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side, written out from RFC 5802 for the tests.
    fn client_final(
        m: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        client_final_with(m, password, client_first_bare, server_first, "")
    }

    /// `nonce_prefix` goes before the server's nonce (old librdkafka
    /// repeats the client nonce there).
    fn client_final_with(
        m: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        nonce_prefix: &str,
    ) -> (String, Vec<u8>) {
        let attrs: std::collections::HashMap<&str, &str> = server_first
            .split(',')
            .filter_map(|a| a.split_once('='))
            .collect();
        let salt = B64.decode(attrs["s"]).unwrap();
        let iterations: u32 = attrs["i"].parse().unwrap();
        let salted = salted_password(m, password.as_bytes(), &salt, iterations);
        let client_key = hmac_of(m, &salted, b"Client Key");
        let stored = digest::digest(m.digest(), &client_key);
        let without_proof = format!("c=biws,r={nonce_prefix}{}", attrs["r"]);
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = hmac_of(m, stored.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_sig = hmac_of(m, &hmac_of(m, &salted, b"Server Key"), auth.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            server_sig,
        )
    }

    #[test]
    fn rfc7677_test_vector_keys() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c = Credential::with_salt(Mechanism::Sha256, "pencil", salt, 4096).unwrap();
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let ex = ServerExchange {
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            first,
            credential: Some(c),
        };
        let server_final = ex
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(
            server_final,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn full_exchanges_for_both_hashes_and_plain() {
        for m in Mechanism::ALL {
            let c = Credential::new(m, "s3cret, with=commas", DEFAULT_ITERATIONS).unwrap();
            assert!(c.verify_password("s3cret, with=commas"));
            assert!(!c.verify_password("s3cret"));
            let first = ClientFirst::parse(b"n,,n=al=2Cice=3D,r=abc123,tokenauth=true").unwrap();
            assert_eq!(first.user, "al,ice=");
            let (ex, server_first) = ServerExchange::start(m, first, Some(c.clone())).unwrap();
            let (fin, server_sig) = client_final(
                m,
                "s3cret, with=commas",
                "n=al=2Cice=3D,r=abc123,tokenauth=true",
                &server_first,
            );
            assert_eq!(
                ex.finish(fin.as_bytes()).unwrap(),
                format!("v={}", B64.encode(server_sig))
            );
            let (bad, _) = client_final(
                m,
                "wrong",
                "n=al=2Cice=3D,r=abc123,tokenauth=true",
                &server_first,
            );
            assert_eq!(ex.finish(bad.as_bytes()), Err(ScramError::Failed));
        }
    }

    #[test]
    fn old_librdkafka_nonces_are_accepted_as_kafka_does() {
        let c = Credential::new(Mechanism::Sha256, "pw", 4096).unwrap();
        let first = ClientFirst::parse(b"n,,n=u,r=cnonce").unwrap();
        let (ex, server_first) = ServerExchange::start(Mechanism::Sha256, first, Some(c)).unwrap();
        let (fin, _) = client_final_with(
            Mechanism::Sha256,
            "pw",
            "n=u,r=cnonce",
            &server_first,
            "cnonce",
        );
        assert!(ex.finish(fin.as_bytes()).is_ok());
    }

    #[test]
    fn unknown_users_fail_only_at_the_proof() {
        let first = ClientFirst::parse(b"n,,n=nobody,r=xyz").unwrap();
        let (ex, server_first) =
            ServerExchange::start(Mechanism::Sha512, first.clone(), None).unwrap();
        let (_, again) = ServerExchange::start(Mechanism::Sha512, first, None).unwrap();
        let salt = |m: &str| {
            m.split(',')
                .find(|a| a.starts_with("s="))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            salt(&server_first),
            salt(&again),
            "an unknown user's salt does not change"
        );
        assert!(server_first.starts_with("r=xyz"));
        let (fin, _) = client_final(Mechanism::Sha512, "pw", "n=nobody,r=xyz", &server_first);
        assert_eq!(ex.finish(fin.as_bytes()), Err(ScramError::Failed));
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b""[..],
            b"n",
            b"n,,",
            b"x,,n=a,r=b",
            b"n,,r=b,n=a",
            b"n,,n=,r=b",
            b"n,,n=a=2,r=b",
            b"\xff,,n=a,r=b",
        ] {
            assert!(ClientFirst::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ClientFirst::parse(b"p=tls-unique,,n=a,r=b"),
            Err(ScramError::ChannelBinding)
        );
        let first = ClientFirst::parse(b"n,,n=a,r=b").unwrap();
        let c = Credential::new(Mechanism::Sha256, "pw", 4096).unwrap();
        let (ex, _) = ServerExchange::start(Mechanism::Sha256, first, Some(c)).unwrap();
        for bad in [
            &b"c=biws,r=b"[..],
            b"c=biws,r=wrong,p=AAAA",
            b"c=eSws,r=b,p=AAAA",
            b"\xff",
        ] {
            assert!(ex.finish(bad).is_err());
        }
        assert_eq!(
            Credential::new(Mechanism::Sha256, "pw", 10),
            Err(ScramError::Iterations)
        );
    }
}
