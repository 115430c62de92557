//! After the decision: forwarding an authorized request (hygiene of the forwarded headers, the
//! gateway's own headers and the token, claim injection), the upstream clients, WebSocket
//! tunnels, the built-in echo upstream, and what an upstream can do wrong (`UpstreamError`).

pub mod direct;
pub mod echo;
pub mod forward;
pub mod headers;
pub mod metrics;
pub mod upstream;
pub mod websocket;

pub use forward::{Forwarder, Grant, Peer};
pub use upstream::UpstreamClient;
