//! The CloudFormation shapes of the PrivateLink template: its parameters, Cognito's interface
//! endpoint and its security group, and the gateway's managed policy.

use crate::aws::node::{Map, Node};
use crate::aws::template::resources::{get_att, reference, POLICY_VERSION};
use crate::exchange::api::Action;

pub(super) const ENDPOINT: &str = "CognitoEndpoint";
pub(super) const ENDPOINT_SG: &str = "CognitoEndpointSecurityGroup";
pub(super) const POLICY: &str = "GatewayCognitoPolicy";
const VPC_PARAM: &str = "VpcId";
const SUBNETS_PARAM: &str = "SubnetIds";
const GATEWAY_SG_PARAM: &str = "GatewaySecurityGroupId";
pub(super) const ROLE_PARAM: &str = "GatewayRoleName";
/// The condition under which the policy is attached to `GatewayRoleName`.
pub(super) const ATTACH: &str = "AttachToGatewayRole";
const HTTPS_PORT: i64 = 443;

/// What to give when creating the stack: where the gateway runs, and the role it signs with.
pub(super) fn parameters() -> Map {
    let param = |ty: &str, description: &str| {
        Map::new()
            .entry("Type", ty)
            .entry("Description", description)
    };
    Map::new()
        .entry(
            VPC_PARAM,
            param(
                "AWS::EC2::VPC::Id",
                "The gateway's VPC. Private DNS needs its DNS support and DNS hostnames enabled.",
            ),
        )
        .entry(
            SUBNETS_PARAM,
            param(
                "List<AWS::EC2::Subnet::Id>",
                "The gateway's subnets, at most one per Availability Zone: the endpoint gets a \
                 network interface in each.",
            ),
        )
        .entry(
            GATEWAY_SG_PARAM,
            param(
                "AWS::EC2::SecurityGroup::Id",
                "The security group of the gateway's ECS tasks, EKS pods or EC2 instances: the \
                 endpoint admits HTTPS from it.",
            ),
        )
        .entry(
            ROLE_PARAM,
            param(
                "String",
                "The name (not the ARN) of the role the gateway signs with: its ECS task role \
                 (not the task execution role), its service account's IRSA role, or its EC2 \
                 instance role. Empty: the policy is attached to nothing; attach the PolicyArn \
                 output yourself.",
            )
            .entry("Default", "")
            .entry("AllowedPattern", "^[\\w+=,.@-]*$")
            .entry("MaxLength", 64i64),
        )
}

/// The endpoint's security group: HTTPS from the gateway's group, nothing else.
pub(super) fn security_group() -> Map {
    Map::new().entry("Type", "AWS::EC2::SecurityGroup").entry(
        "Properties",
        Map::new()
            .entry(
                "GroupDescription",
                "cognito-gate: HTTPS from the gateway to the Cognito interface endpoint",
            )
            .entry("VpcId", reference(VPC_PARAM))
            .entry(
                "SecurityGroupIngress",
                vec![Map::new()
                    .entry("IpProtocol", "tcp")
                    .entry("FromPort", HTTPS_PORT)
                    .entry("ToPort", HTTPS_PORT)
                    .entry("SourceSecurityGroupId", reference(GATEWAY_SG_PARAM))
                    .entry("Description", "HTTPS from the gateway")],
            ),
    )
}

/// The interface endpoint for `service`, private DNS on, in the gateway's subnets.
pub(super) fn endpoint(service: &str) -> Map {
    Map::new().entry("Type", "AWS::EC2::VPCEndpoint").entry(
        "Properties",
        Map::new()
            .entry("VpcEndpointType", "Interface")
            .entry("ServiceName", service)
            .entry("VpcId", reference(VPC_PARAM))
            .entry("SubnetIds", reference(SUBNETS_PARAM))
            .entry("SecurityGroupIds", vec![get_att(ENDPOINT_SG, "GroupId")])
            .entry("PrivateDnsEnabled", true),
    )
}

/// The managed policy: `actions` only, on `pool_arn` only, attached to the role when named.
pub(super) fn policy(actions: &[Action], pool_arn: Node) -> Map {
    let actions: Vec<Node> = actions
        .iter()
        .map(|a| Node::from(format!("cognito-idp:{}", a.name())))
        .collect();
    Map::new().entry("Type", "AWS::IAM::ManagedPolicy").entry(
        "Properties",
        Map::new()
            .entry(
                "Description",
                "cognito-gate: the Cognito admin actions the gateway signs, only on its user pool",
            )
            .entry(
                "PolicyDocument",
                Map::new().entry("Version", POLICY_VERSION).entry(
                    "Statement",
                    vec![Map::new()
                        .entry("Effect", "Allow")
                        .entry("Action", actions)
                        .entry("Resource", vec![pool_arn])],
                ),
            )
            .entry(
                "Roles",
                Map::new().entry(
                    "Fn::If",
                    vec![
                        Node::from(ATTACH),
                        Node::from(vec![reference(ROLE_PARAM)]),
                        reference("AWS::NoValue"),
                    ],
                ),
            ),
    )
}

/// True when `GatewayRoleName` is given: the policy is attached to that role.
pub(super) fn attach_condition() -> Map {
    Map::new().entry(
        "Fn::Not",
        vec![Map::new().entry("Fn::Equals", vec![reference(ROLE_PARAM), Node::from("")])],
    )
}
