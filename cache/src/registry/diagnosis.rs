//! What kind of transport failure a registry call hit, whether retrying can help, and the
//! flag that fixes it: a plain-HTTP registry behind an HTTPS URL, an unknown CA, a wrong
//! name, DNS, a refused connection, a timeout. Only the transient kinds (refused, timeout,
//! a temporary DNS failure, anything unrecognised) are retried; the others fail at once
//! with a hint, so a misconfigured registry costs milliseconds, not backoff rounds.

use std::error::Error as StdError;
use std::fmt;

/// The kind of a transport error (no HTTP answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The TLS handshake got something that is not TLS: the registry speaks plain HTTP.
    PlainHttp,
    /// The certificate is signed by an authority this client does not trust.
    UnknownAuthority,
    /// The certificate is not issued for the registry's name.
    WrongName,
    /// Another certificate problem (expired, not yet valid, revoked, bad signature).
    BadCertificate,
    /// The registry's name does not resolve.
    Dns,
    /// The name server did not answer (`EAI_AGAIN`): may pass.
    DnsTemporary,
    /// Nothing listens at the address (yet: a registry restarting refuses for a moment).
    Refused,
    /// No answer in time.
    Timeout,
    /// Anything else (reset connections, broken streams).
    Other,
}

impl TransportFailure {
    /// Classifies an error by its cause chain (rustls errors, I/O error kinds, hyper's
    /// `dns error` context, reqwest's timeout flag).
    pub fn of(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout;
        }
        Self::of_chain(err)
    }

    /// Classifies any error chain (what [`TransportFailure::of`] walks).
    pub fn of_chain(err: &(dyn StdError + 'static)) -> Self {
        let mut dns = false;
        let mut cause = Some(err);
        while let Some(e) = cause {
            // hyper-util names resolver failures only by this context message.
            dns |= e.to_string() == "dns error";
            if let Some(kind) = Self::of_error(e, dns, 0) {
                return kind;
            }
            cause = e.source();
        }
        if dns {
            Self::Dns
        } else {
            Self::Other
        }
    }

    /// One error of the chain. An `io::Error` is looked through, nested ones too: its
    /// `source()` skips the error it wraps (the TLS connector wraps tokio-rustls' `io::Error`,
    /// which wraps rustls' error, in another `io::Error`).
    fn of_error(e: &(dyn StdError + 'static), dns: bool, depth: u8) -> Option<Self> {
        if depth > 4 {
            return None;
        }
        if let Some(kind) = e.downcast_ref::<rustls::Error>().and_then(tls_kind) {
            return Some(kind);
        }
        let io = e.downcast_ref::<std::io::Error>()?;
        if let Some(kind) = io.get_ref().and_then(|inner| Self::of_error(inner, dns, depth + 1)) {
            return Some(kind);
        }
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => Some(Self::Refused),
            std::io::ErrorKind::TimedOut => Some(Self::Timeout),
            _ if dns && io.to_string().contains("Temporary failure") => Some(Self::DnsTemporary),
            _ => None,
        }
    }

    /// Whether a retry may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::DnsTemporary | Self::Refused | Self::Timeout | Self::Other)
    }

    /// What happened and what to do, for `registry` (`host[:port]`).
    pub fn explain(self, registry: &str) -> String {
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        match self {
            Self::PlainHttp => format!("{registry} answered the TLS handshake with plain HTTP; if it serves plain HTTP, pass --insecure-registry {registry}"),
            Self::UnknownAuthority => format!("the certificate of {registry} is signed by an unknown authority; trust its CA with --registry-certificate {registry}=/path/to/ca.pem (or skip the check with --skip-tls-verify-registry {registry})"),
            Self::WrongName => format!("the certificate of {registry} is not issued for {host}; use the name it is issued for, or --skip-tls-verify-registry {registry}"),
            Self::BadCertificate => format!("the certificate of {registry} is not valid (expired, not yet valid or revoked); renew it, or pass --skip-tls-verify-registry {registry}"),
            Self::Dns => format!("{host} does not resolve; check the registry name (and the DNS of this machine or pod)"),
            Self::DnsTemporary => format!("the name server did not answer for {host}; check the DNS of this machine or pod"),
            Self::Refused => format!("nothing listens at {registry}; check the address and port, and that the registry runs"),
            Self::Timeout => format!("{registry} did not answer in time; check the network path (proxies: HTTPS_PROXY, NO_PROXY)"),
            Self::Other => format!("the connection to {registry} failed; check the network path"),
        }
    }
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PlainHttp => "TLS/HTTP mismatch",
            Self::UnknownAuthority => "unknown certificate authority",
            Self::WrongName => "certificate name mismatch",
            Self::BadCertificate => "invalid certificate",
            Self::Dns => "DNS lookup failed",
            Self::DnsTemporary => "DNS lookup failed temporarily",
            Self::Refused => "connection refused",
            Self::Timeout => "timed out",
            Self::Other => "connection failed",
        })
    }
}

fn tls_kind(err: &rustls::Error) -> Option<TransportFailure> {
    use rustls::{CertificateError as C, Error as E, InvalidMessage as M};
    Some(match err {
        E::InvalidMessage(M::InvalidContentType | M::UnknownProtocolVersion | M::MessageTooLarge) => {
            TransportFailure::PlainHttp
        }
        E::InvalidCertificate(C::UnknownIssuer) => TransportFailure::UnknownAuthority,
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => TransportFailure::WrongName,
        E::InvalidCertificate(_) => TransportFailure::BadCertificate,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// hyper-util's shape: a context error whose source is the real one.
    #[derive(Debug)]
    struct Context(&'static str, Box<dyn StdError + Send + Sync>);
    impl fmt::Display for Context {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Context {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.1)
        }
    }

    fn tls(e: rustls::Error) -> Context {
        Context("client error (Connect)", Box::new(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    #[rstest::rstest]
    #[case::plain_http(
        tls(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)),
        TransportFailure::PlainHttp,
        false,
        "--insecure-registry reg:5000"
    )]
    #[case::unknown_ca(
        tls(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
        TransportFailure::UnknownAuthority,
        false,
        "--registry-certificate reg:5000="
    )]
    #[case::wrong_name(
        tls(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)),
        TransportFailure::WrongName,
        false,
        "not issued for reg"
    )]
    #[case::expired(
        tls(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)),
        TransportFailure::BadCertificate,
        false,
        "--skip-tls-verify-registry reg:5000"
    )]
    #[case::dns(
        Context(
            "dns error",
            Box::new(io::Error::other("failed to lookup address information: Name or service not known"))
        ),
        TransportFailure::Dns,
        false,
        "reg does not resolve"
    )]
    #[case::dns_again(
        Context(
            "dns error",
            Box::new(io::Error::other("failed to lookup address information: Temporary failure in name resolution"))
        ),
        TransportFailure::DnsTemporary,
        true,
        "name server"
    )]
    #[case::refused(
        Context("tcp connect error", Box::new(io::Error::from(io::ErrorKind::ConnectionRefused))),
        TransportFailure::Refused,
        true,
        "nothing listens at reg:5000"
    )]
    #[case::timeout(
        Context("tcp connect error", Box::new(io::Error::from(io::ErrorKind::TimedOut))),
        TransportFailure::Timeout,
        true,
        "in time"
    )]
    #[case::nested_io(
        Context(
            "client error (Connect)",
            Box::new(io::Error::other(io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            )))
        ),
        TransportFailure::UnknownAuthority,
        false,
        "--registry-certificate"
    )]
    #[case::reset(
        Context("connection error", Box::new(io::Error::from(io::ErrorKind::ConnectionReset))),
        TransportFailure::Other,
        true,
        "failed"
    )]
    fn classifies_and_hints(
        #[case] err: Context,
        #[case] kind: TransportFailure,
        #[case] transient: bool,
        #[case] hint: &str,
    ) {
        let got = TransportFailure::of_chain(&err);
        assert_eq!(got, kind);
        assert_eq!(got.is_transient(), transient);
        assert!(got.explain("reg:5000").contains(hint), "{}", got.explain("reg:5000"));
    }
}
