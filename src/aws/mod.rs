//! The AWS side of the gateway (DESIGN §9): what a configuration needs in AWS, made from the
//! configuration itself so that the two cannot drift apart.
//!
//! - `template.rs`: `cognito-gate aws template`, the CloudFormation template of the private REST
//!   API that proxies Cognito (one method per action the config uses, a JWKS method per pool),
//!   its resource policy, execution role, deployment and stage; or, for Cognito called straight
//!   through its PrivateLink endpoint with SigV4, the interface endpoint and the IAM policy of the
//!   gateway's identity;
//! - `check.rs`: `cognito-gate aws check`, the checklist of what the configuration depends on;
//! - `node.rs`: the ordered document both of its renderings (commented YAML, JSON) are made from.

pub mod check;
pub mod node;
pub mod template;
