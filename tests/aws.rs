//! The AWS side, through the real binary: `aws template` (the CloudFormation template checked with
//! cfn-lint and by its content).

mod common;

#[path = "aws/template.rs"]
mod template;
