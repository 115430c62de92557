//! The AWS side: `aws template` (the CloudFormation template checked with cfn-lint and by its
//! content), the credential exchange against moto (behind an API Gateway stand-in, and straight
//! to Cognito with SigV4 checked by moto's IAM enforcement), and `aws check`.

mod common;

#[path = "aws/moto.rs"]
mod moto;
#[path = "aws/template.rs"]
mod template;
