//! Listeners in Kafka's notation (`listeners` / `advertised.listeners`):
//! `PROTOCOL://HOST:PORT` entries, comma separated, where the protocol is
//! one of PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL and also names the
//! listener (Sluice has no `listener.security.protocol.map`).

use std::fmt;

/// How a listener's connections are secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether connections are wrapped in TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before anything else.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `PROTOCOL://HOST:PORT` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub protocol: SecurityProtocol,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.protocol, self.address())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListenerError {
    #[error("listener '{0}' is not PROTOCOL://HOST:PORT")]
    Form(String),
    #[error(
        "listener '{0}': unknown security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
    )]
    Protocol(String),
    #[error("listener '{0}': invalid port")]
    Port(String),
    #[error("two listeners use the security protocol {0}")]
    Duplicate(SecurityProtocol),
    #[error("no listeners given")]
    Empty,
}

/// Parses a comma list of listeners. An empty host (`PLAINTEXT://:9092`)
/// is kept empty (bind: every interface).
pub fn parse_listeners(s: &str) -> Result<Vec<Endpoint>, ListenerError> {
    let mut out: Vec<Endpoint> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (proto, rest) = item
            .split_once("://")
            .ok_or_else(|| ListenerError::Form(item.to_string()))?;
        let protocol =
            SecurityProtocol::parse(proto).ok_or_else(|| ListenerError::Protocol(item.into()))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| ListenerError::Form(item.to_string()))?;
        let port: u16 = port
            .parse()
            .map_err(|_| ListenerError::Port(item.to_string()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if out.iter().any(|e| e.protocol == protocol) {
            return Err(ListenerError::Duplicate(protocol));
        }
        out.push(Endpoint {
            protocol,
            host,
            port,
        });
    }
    if out.is_empty() {
        return Err(ListenerError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_listener_lists() {
        let l =
            parse_listeners("PLAINTEXT://127.0.0.1:9092, sasl_ssl://0.0.0.0:9093,SSL://[::1]:9094")
                .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l[1].address(), "0.0.0.0:9093");
        assert_eq!(l[2].host, "::1");
        assert_eq!(l[2].address(), "[::1]:9094");
        assert_eq!(l[0].to_string(), "PLAINTEXT://127.0.0.1:9092");
    }

    #[test]
    fn refuses_bad_lists() {
        assert_eq!(parse_listeners(""), Err(ListenerError::Empty));
        assert!(matches!(
            parse_listeners("127.0.0.1:9092"),
            Err(ListenerError::Form(_))
        ));
        assert!(matches!(
            parse_listeners("TLS://h:1"),
            Err(ListenerError::Protocol(_))
        ));
        assert!(matches!(
            parse_listeners("SSL://h:99999"),
            Err(ListenerError::Port(_))
        ));
        assert_eq!(
            parse_listeners("SSL://a:1,SSL://b:2"),
            Err(ListenerError::Duplicate(SecurityProtocol::Ssl))
        );
    }
}
