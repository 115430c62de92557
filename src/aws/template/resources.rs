//! The CloudFormation shapes of the template: intrinsic functions in their long form (so one
//! model renders as YAML and as JSON), the REST API with its resource policy, the execution role,
//! and the two kinds of method.

use crate::aws::node::{Map, Node};
use crate::exchange::api::Action;

pub(super) const API: &str = "CognitoProxyApi";
pub(super) const ROLE: &str = "CognitoProxyRole";
pub(super) const STAGE: &str = "CognitoProxyStage";
pub(super) const VPCE_PARAM: &str = "VpcEndpointIds";
pub(super) const STAGE_PARAM: &str = "StageName";
/// What Cognito's JSON 1.1 protocol expects; the gateway sends `application/json`.
const AMZ_JSON: &str = "application/x-amz-json-1.1";
const ERROR_TYPE_HEADER: &str = "x-amzn-ErrorType";
pub(super) const POLICY_VERSION: &str = "2012-10-17";

pub(super) fn sub(s: impl Into<String>) -> Node {
    Map::new().entry("Fn::Sub", s.into()).into()
}

pub(super) fn sub_with(s: impl Into<String>, vars: Map) -> Node {
    Map::new()
        .entry("Fn::Sub", vec![Node::Str(s.into()), Node::Map(vars)])
        .into()
}

/// Text placed in an `Fn::Sub` string literally (`${` would start a variable).
pub(super) fn sub_literal(s: &str) -> String {
    s.replace("${", "${!")
}

pub(super) fn reference(name: &str) -> Node {
    Map::new().entry("Ref", name).into()
}

pub(super) fn get_att(resource: &str, attribute: &str) -> Node {
    Map::new()
        .entry("Fn::GetAtt", vec![resource, attribute])
        .into()
}

/// `Fn::Sub` text for the region: the given one, else the stack's.
pub(super) fn region_sub(region: Option<&str>) -> String {
    region.map_or_else(|| "${AWS::Region}".to_string(), sub_literal)
}

/// The private REST API and its resource policy.
pub(super) fn rest_api() -> Map {
    let statement = |effect: &str| {
        Map::new()
            .entry("Effect", effect)
            .entry("Principal", "*")
            .entry("Action", "execute-api:Invoke")
            .entry("Resource", "execute-api:/*")
    };
    let deny = statement("Deny").entry(
        "Condition",
        Map::new().entry(
            "StringNotEquals",
            Map::new().entry("aws:SourceVpce", reference(VPCE_PARAM)),
        ),
    );
    Map::new().entry("Type", "AWS::ApiGateway::RestApi").entry(
        "Properties",
        Map::new()
            .entry("Name", sub("${AWS::StackName}-cognito-proxy"))
            .entry(
                "Description",
                "cognito-gate: Cognito actions and JWKS for the gateway, inside the VPC",
            )
            .comment("Reachable only through interface VPC endpoints for execute-api.")
            .entry(
                "EndpointConfiguration",
                Map::new()
                    .entry("Types", vec!["PRIVATE"])
                    .entry("VpcEndpointIds", reference(VPCE_PARAM)),
            )
            .comment(
                "The resource policy (a private API answers nothing without one): allow \
                 invoking, then deny every request that does not come through one of the given \
                 VPC endpoints. A Deny wins.",
            )
            .entry(
                "Policy",
                Map::new()
                    .entry("Version", POLICY_VERSION)
                    .entry("Statement", vec![statement("Allow"), deny]),
            ),
    )
}

/// The execution role: `actions` only, on `pool_arn` only.
pub(super) fn role(actions: &[Action], pool_arn: Node) -> Map {
    let actions: Vec<Node> = actions
        .iter()
        .map(|a| Node::from(format!("cognito-idp:{}", a.name())))
        .collect();
    Map::new().entry("Type", "AWS::IAM::Role").entry(
        "Properties",
        Map::new()
            .entry(
                "Description",
                "cognito-gate: API Gateway calls these Cognito actions on this user pool",
            )
            .entry(
                "AssumeRolePolicyDocument",
                Map::new().entry("Version", POLICY_VERSION).entry(
                    "Statement",
                    vec![Map::new()
                        .entry("Effect", "Allow")
                        .entry(
                            "Principal",
                            Map::new().entry("Service", "apigateway.amazonaws.com"),
                        )
                        .entry("Action", "sts:AssumeRole")],
                ),
            )
            .entry(
                "Policies",
                vec![Map::new().entry("PolicyName", "cognito-idp-actions").entry(
                    "PolicyDocument",
                    Map::new().entry("Version", POLICY_VERSION).entry(
                        "Statement",
                        vec![Map::new()
                            .entry("Effect", "Allow")
                            .entry("Action", actions)
                            .entry("Resource", vec![pool_arn])],
                    ),
                )],
            ),
    )
}

/// A POST method calling a Cognito action: an AWS-service integration through the role.
pub(super) fn action_method(resource: Node, action: Action, region: Option<&str>) -> Map {
    let uri = sub(format!(
        "arn:${{AWS::Partition}}:apigateway:{}:cognito-idp:action/{}",
        region_sub(region),
        action.name()
    ));
    let error_header = format!("method.response.header.{ERROR_TYPE_HEADER}");
    let error_response = |status: &str, pattern: &str| {
        Map::new()
            .entry("StatusCode", status)
            .entry("SelectionPattern", pattern)
            .entry(
                "ResponseParameters",
                Map::new().entry(
                    error_header.as_str(),
                    format!("integration.response.header.{ERROR_TYPE_HEADER}"),
                ),
            )
    };
    let method_response = |status: &str| {
        Map::new().entry("StatusCode", status).entry(
            "ResponseParameters",
            Map::new().entry(error_header.as_str(), false),
        )
    };
    Map::new().entry("Type", "AWS::ApiGateway::Method").entry(
        "Properties",
        Map::new()
            .entry("RestApiId", reference(API))
            .entry("ResourceId", resource)
            .entry("HttpMethod", "POST")
            .comment("No authorizer: the resource policy is the guard.")
            .entry("AuthorizationType", "NONE")
            .entry(
                "Integration",
                Map::new()
                    .entry("Type", "AWS")
                    .entry("IntegrationHttpMethod", "POST")
                    .entry("Uri", uri)
                    .entry("Credentials", get_att(ROLE, "Arn"))
                    .comment(
                        "Cognito reads JSON 1.1; the body is the gateway's JSON, unchanged. \
                         Other content types are refused (415): the gateway sends \
                         application/json.",
                    )
                    .entry(
                        "RequestParameters",
                        Map::new().entry(
                            "integration.request.header.Content-Type",
                            format!("'{AMZ_JSON}'"),
                        ),
                    )
                    .entry(
                        "RequestTemplates",
                        Map::new().entry("application/json", "$input.json('$')"),
                    )
                    .entry("PassthroughBehavior", "NEVER")
                    .comment(
                        "Selected by Cognito's status. The default passes a 200 through; \
                         Cognito's errors keep their body (with __type, which the gateway reads) \
                         and their x-amzn-ErrorType header, 4xx as 400 and 5xx as 502.",
                    )
                    .entry(
                        "IntegrationResponses",
                        vec![
                            Map::new().entry("StatusCode", "200"),
                            error_response("400", "4\\d{2}"),
                            error_response("502", "5\\d{2}"),
                        ],
                    ),
            )
            .entry(
                "MethodResponses",
                vec![
                    Map::new().entry("StatusCode", "200"),
                    method_response("400"),
                    method_response("502"),
                ],
            ),
    )
}

/// A GET method serving a pool's JWKS: an HTTP integration to Cognito.
pub(super) fn jwks_method(resource: Node, uri: Node) -> Map {
    Map::new().entry("Type", "AWS::ApiGateway::Method").entry(
        "Properties",
        Map::new()
            .entry("RestApiId", reference(API))
            .entry("ResourceId", resource)
            .entry("HttpMethod", "GET")
            .entry("AuthorizationType", "NONE")
            .entry(
                "Integration",
                Map::new()
                    .entry("Type", "HTTP")
                    .entry("IntegrationHttpMethod", "GET")
                    .entry("Uri", uri)
                    .entry("PassthroughBehavior", "WHEN_NO_MATCH")
                    .comment(
                        "Any failure at Cognito is a 502 here, never a 200 with an error body.",
                    )
                    .entry(
                        "IntegrationResponses",
                        vec![
                            Map::new().entry("StatusCode", "200"),
                            Map::new()
                                .entry("StatusCode", "502")
                                .entry("SelectionPattern", "[45]\\d{2}"),
                        ],
                    ),
            )
            .entry(
                "MethodResponses",
                vec![
                    Map::new().entry("StatusCode", "200"),
                    Map::new().entry("StatusCode", "502"),
                ],
            ),
    )
}

/// An API resource: one path part under `parent`.
pub(super) fn path_resource(parent: Node, part: &str) -> Map {
    Map::new().entry("Type", "AWS::ApiGateway::Resource").entry(
        "Properties",
        Map::new()
            .entry("RestApiId", reference(API))
            .entry("ParentId", parent)
            .entry("PathPart", part),
    )
}

/// The stack's parameters: the VPC endpoints, and the stage when `base_url` names none.
pub(super) fn parameters(stage_param_default: Option<&str>) -> Map {
    let mut params = Map::new().entry(
        VPCE_PARAM,
        Map::new()
            .entry("Type", "CommaDelimitedList")
            .entry(
                "Description",
                "The interface VPC endpoints for execute-api (service \
                 com.amazonaws.REGION.execute-api) in the gateway's VPC, comma-separated, e.g. \
                 vpce-0123456789abcdef0. Requests that come any other way are refused.",
            )
            .entry("AllowedPattern", "^vpce-[0-9a-f]+$")
            .entry(
                "ConstraintDescription",
                "VPC endpoint ids: vpce- and hexadecimal digits",
            ),
    );
    if let Some(default) = stage_param_default {
        params.push(
            STAGE_PARAM,
            Map::new()
                .entry("Type", "String")
                .entry(
                    "Description",
                    "The stage (private_api.base_url has no path to name it)",
                )
                .entry("Default", default)
                .entry("AllowedPattern", "^[A-Za-z0-9_-]+$"),
        );
    }
    params
}
