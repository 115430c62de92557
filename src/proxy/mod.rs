//! Forwarding: the route table, header hygiene and claim injection, the upstream client and the
//! built-in echo upstream.

pub mod cors;
pub mod direct;
pub mod echo;
pub mod forward;
pub mod headers;
pub mod path;
pub mod routes;
pub mod upstream;
pub mod websocket;

pub use forward::{Forwarder, Grant, Peer};
pub use routes::RouteTable;
pub use upstream::UpstreamClient;
