//! Securing the Kafka listeners: which listeners exist and how each is
//! secured ([`listeners`]), TLS ([`tls`]), SASL authentication ([`sasl`])
//! with SCRAM credentials ([`scram`]); Kafka's authorization model
//! ([`acl`]: rules and the decision over them), the authorizer holding the
//! catalog's rules ([`authz`]) and the checks each API makes
//! ([`guard`]).

pub mod acl;
pub mod authz;
pub mod guard;
pub mod listeners;
pub mod sasl;
pub mod scram;
pub mod tls;

use listeners::{Endpoint, SecurityProtocol};
use sasl::{SaslMechanism, Users};
use std::sync::Arc;
use std::time::Duration;

/// How long a client has to finish the TLS handshake and, on a SASL
/// listener, to authenticate, before its connection is closed.
pub const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener does with the connections it accepts.
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    /// Host and port clients are told for this broker on this listener.
    pub advertised: (String, i32),
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub sasl: Option<(Arc<Users>, Arc<Vec<SaslMechanism>>)>,
    /// KIP-368: how long a SASL login lasts before the client must
    /// re-authenticate on the connection (none: for the connection's life).
    pub sasl_lifetime: Option<Duration>,
}

impl ListenerSecurity {
    /// A PLAINTEXT listener advertising `host:port`.
    pub fn plaintext(host: String, port: i32) -> Arc<Self> {
        Arc::new(Self {
            protocol: SecurityProtocol::Plaintext,
            advertised: (host, port),
            tls: None,
            sasl: None,
            sasl_lifetime: None,
        })
    }

    /// A listener for `advertised`, with the TLS acceptor and SASL users
    /// its protocol needs.
    pub fn new(
        advertised: &Endpoint,
        tls: Option<tokio_rustls::TlsAcceptor>,
        sasl: Option<(Arc<Users>, Arc<Vec<SaslMechanism>>)>,
        sasl_lifetime: Option<Duration>,
    ) -> Arc<Self> {
        let p = advertised.protocol;
        Arc::new(Self {
            protocol: p,
            advertised: (advertised.host.clone(), advertised.port as i32),
            tls: tls.filter(|_| p.tls()),
            sasl: sasl.filter(|_| p.sasl()),
            sasl_lifetime,
        })
    }
}
