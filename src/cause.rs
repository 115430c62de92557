//! Why a call to a dependency failed, in the words an operator fixes it with: name resolution,
//! connection refused or reset, timeout, or TLS (unknown issuer, name mismatch, expired). Read
//! off the error's source chain (reqwest, hyper-util, tokio-rustls, redis and std I/O errors all
//! keep theirs). A leaf: it imports nothing of the gateway.

use std::error::Error;

/// The cause of a failed connection or call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The name did not resolve (no such host, or no DNS answer).
    Dns,
    /// Nothing listens there (TCP RST to the SYN).
    Refused,
    /// No answer in time (connect or the whole call).
    Timeout,
    /// The peer closed or reset the connection.
    Reset,
    /// The server's certificate chain ends at a CA the gateway does not trust.
    TlsUnknownIssuer,
    /// The certificate is not for the name the gateway asked for.
    TlsNameMismatch,
    /// The certificate has expired (or is not valid yet).
    TlsExpired,
    /// Any other TLS failure (handshake, protocol version, a bad certificate).
    Tls,
    /// None of the above: the message says what.
    Other,
}

impl Cause {
    /// Walks `err`'s source chain (and the errors wrapped inside `std::io::Error`s, which
    /// `source()` skips).
    pub fn of(err: &(dyn Error + 'static)) -> Cause {
        let mut found = Cause::Other;
        let mut next: Option<&(dyn Error + 'static)> = Some(err);
        while let Some(e) = next {
            let here = Self::one(e);
            if here != Cause::Other {
                found = here;
                // A TLS detail or DNS beats the generic wrapper it sits in.
                if !matches!(here, Cause::Timeout | Cause::Reset) {
                    return here;
                }
            }
            next = match e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => Some(inner as &(dyn Error + 'static)),
                None => e.source(),
            };
        }
        found
    }

    fn one(e: &(dyn Error + 'static)) -> Cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            use rustls::CertificateError as C;
            return match tls {
                rustls::Error::InvalidCertificate(c) => match c {
                    C::UnknownIssuer => Cause::TlsUnknownIssuer,
                    C::NotValidForName | C::NotValidForNameContext { .. } => Cause::TlsNameMismatch,
                    C::Expired
                    | C::ExpiredContext { .. }
                    | C::NotValidYet
                    | C::NotValidYetContext { .. } => Cause::TlsExpired,
                    _ => Cause::Tls,
                },
                _ => Cause::Tls,
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return Cause::Refused,
                K::TimedOut => return Cause::Timeout,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return Cause::Reset
                }
                _ => {}
            }
        }
        if e.is::<tokio::time::error::Elapsed>() {
            return Cause::Timeout;
        }
        let text = e.to_string();
        if text.starts_with("dns error")
            || text.contains("failed to lookup address")
            || text.contains("Name or service not known")
            || text.contains("No address associated with hostname")
            || text.contains("Temporary failure in name resolution")
        {
            return Cause::Dns;
        }
        if text.contains("Connection refused") {
            return Cause::Refused;
        }
        Cause::Other
    }

    /// For a reqwest error: its own timeout flag first, then the chain.
    pub fn of_reqwest(e: &reqwest::Error) -> Cause {
        match Cause::of(e) {
            Cause::Other if e.is_timeout() => Cause::Timeout,
            c => c,
        }
    }

    /// The `cause` field of log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Dns => "dns",
            Cause::Refused => "connection_refused",
            Cause::Timeout => "timeout",
            Cause::Reset => "connection_reset",
            Cause::TlsUnknownIssuer => "tls_unknown_issuer",
            Cause::TlsNameMismatch => "tls_name_mismatch",
            Cause::TlsExpired => "tls_certificate_expired",
            Cause::Tls => "tls",
            Cause::Other => "other",
        }
    }

    /// The cause a message carries as `[cause=…]` (what `describe_reqwest`-style messages
    /// write), for checks that only have the text.
    pub fn tagged(text: &str) -> Option<Cause> {
        let tag = text.split("[cause=").nth(1)?.split(']').next()?;
        [
            Cause::Dns,
            Cause::Refused,
            Cause::Timeout,
            Cause::Reset,
            Cause::TlsUnknownIssuer,
            Cause::TlsNameMismatch,
            Cause::TlsExpired,
            Cause::Tls,
        ]
        .into_iter()
        .find(|c| c.as_str() == tag)
    }

    /// What happened, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Cause::Dns => "the name did not resolve (DNS)",
            Cause::Refused => "connection refused (nothing listens on that address and port)",
            Cause::Timeout => "timed out",
            Cause::Reset => "the connection was closed or reset",
            Cause::TlsUnknownIssuer => {
                "TLS: the server's certificate is signed by a CA the gateway does not trust"
            }
            Cause::TlsNameMismatch => "TLS: the server's certificate is not for this host name",
            Cause::TlsExpired => "TLS: the server's certificate has expired or is not valid yet",
            Cause::Tls => "TLS handshake failed",
            Cause::Other => "the call failed",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// `err` and its sources on one line, `: `-separated, without repeating a wrapper's text.
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_io_kinds_and_wrapped_tls_errors() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Cause::of(&refused), Cause::Refused);
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(Cause::of(&tls), Cause::TlsUnknownIssuer);
        let name = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        assert_eq!(Cause::of(&name), Cause::TlsNameMismatch);
        let dns = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert_eq!(Cause::of(&dns), Cause::Dns);
        assert_eq!(Cause::of(&std::io::Error::other("x")), Cause::Other);
    }
}
