//! `cognito-gate aws template`: the CloudFormation template of the private REST API through which
//! the gateway calls Cognito, made from the loaded configuration. One POST method per Cognito
//! action the configuration uses (an AWS-service integration through an execution role that may
//! call only those actions, only on the exchange's user pool), one GET method per pool serving its
//! JWKS, a resource policy that refuses every request not coming through the given VPC endpoints,
//! and the deployment and stage that `private_api.base_url` names.
//!
//! Cognito's errors reach the gateway in the shape it parses (`exchange/response.rs`): Cognito's
//! own body (with `__type`), its 4xx as 400 and its 5xx as 502, with `x-amzn-ErrorType`.
//!
//! Style `cognito-idp` with `sign = "sigv4"` needs no API Gateway: its template (`privatelink.rs`)
//! is Cognito's interface VPC endpoint and the IAM policy of the gateway's own identity.
//!
//! - `plan.rs`: what the configuration asks for (stage, actions and paths, each pool's JWKS);
//! - `resources.rs`: the CloudFormation shapes;
//! - `privatelink.rs`: the template of Cognito called straight through its VPC endpoint;
//! - here: naming and assembling them, the outputs, the comments.

mod plan;
mod privatelink;
mod resources;

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::node::{self, Map, Node};
use crate::config::{ApiStyle, Config, ConfigError, ConfigErrors};
pub use plan::aws_issuer;
use plan::{JwksSource, Plan, DEFAULT_STAGE};
use resources::*;

/// The two renderings of one template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// With `#` comments that explain each part.
    Yaml,
    /// The same content, without comments.
    Json,
}

/// A generated template: the document and the comment that heads its YAML form.
#[derive(Debug, Clone)]
pub struct Template {
    header: String,
    root: Map,
}

impl Template {
    /// The template for `config`, or every reason it cannot be made, each naming its key.
    pub(crate) fn from_config(config: &Config) -> Result<Template, ConfigErrors> {
        if let Some(api) = &config.private_api {
            if api.style == ApiStyle::CognitoIdp {
                return privatelink::template(config, api).map_err(ConfigErrors);
            }
        }
        let mut errors = Vec::new();
        let mut err = |key: &str, message: &str| {
            errors.push(ConfigError {
                key: key.to_string(),
                message: message.to_string(),
            })
        };
        if config.cognito.is_none() {
            err(
                "cognito",
                "aws template needs the [cognito] section: the user pools whose JWKS the API \
                 serves",
            );
        }
        if config.private_api.is_none() {
            err(
                "private_api",
                "aws template needs the [private_api] section: its base_url names the API's \
                 stage",
            );
        }
        match (&config.cognito, &config.private_api) {
            (Some(cognito), Some(api)) if errors.is_empty() => {
                let plan = plan::plan(config, cognito, api).map_err(ConfigErrors)?;
                Ok(Assembly::default().template(plan))
            }
            _ => Err(ConfigErrors(errors)),
        }
    }

    pub(crate) fn render(&self, format: Format) -> String {
        match format {
            Format::Yaml => node::to_yaml(&self.header, &self.root),
            Format::Json => node::to_json(&self.root),
        }
    }
}

/// A CloudFormation logical id made of the alphanumeric words of `parts`.
fn camel<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for part in parts {
        for word in part.split(|c: char| !c.is_ascii_alphanumeric()) {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.extend(chars);
            }
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "Path");
    }
    out
}

/// Logical ids and the API's resource tree, as the methods ask for them.
#[derive(Default)]
struct Assembly {
    ids: HashSet<String>,
    /// Every path with a resource, parents before children, and the resource's logical id.
    tree: Vec<(Vec<String>, String)>,
}

impl Assembly {
    /// A logical id not taken yet: `base`, else `base2`, `base3`...
    fn id(&mut self, base: String) -> String {
        let mut id = base.clone();
        let mut n = 2;
        while !self.ids.insert(id.clone()) {
            id = format!("{base}{n}");
            n += 1;
        }
        id
    }

    /// The `ResourceId` of `path`, its resources (and their parents) made as needed.
    fn resource(&mut self, path: &[String]) -> Node {
        let mut node = get_att(API, "RootResourceId");
        for depth in 1..=path.len() {
            let at = &path[..depth];
            let id = match self.tree.iter().find(|(p, _)| p == at) {
                Some((_, id)) => id.clone(),
                None => {
                    let id = self.id(format!("{}Resource", camel(at.iter().map(String::as_str))));
                    self.tree.push((at.to_vec(), id.clone()));
                    id
                }
            };
            node = reference(&id);
        }
        node
    }

    fn template(mut self, plan: Plan) -> Template {
        for reserved in [API, ROLE, STAGE] {
            self.ids.insert(reserved.to_string());
        }
        let mut methods = Map::new();
        let mut method_ids = Vec::new();
        let mut role = None;
        if let Some(ex) = &plan.exchange {
            let region = ex.region.as_deref();
            for m in &ex.methods {
                let id = self.id(format!("{}Method", m.action.name()));
                let resource = self.resource(&m.path);
                methods.push_commented(
                    format!(
                        "POST /{}: Cognito {} ({}).",
                        m.path.join("/"),
                        m.action.name(),
                        m.key
                    ),
                    id.as_str(),
                    action_method(resource, m.action, region),
                );
                method_ids.push(id);
            }
            let pool_arn = sub(format!(
                "arn:${{AWS::Partition}}:cognito-idp:{}:${{AWS::AccountId}}:userpool/{}",
                region_sub(region),
                sub_literal(&ex.user_pool_id)
            ));
            let actions: Vec<_> = ex.methods.iter().map(|m| m.action).collect();
            let comment = format!(
                "The role API Gateway calls Cognito with: only the actions this configuration \
                 uses (auth_flow {}, refresh_flow {}), only on the user pool the exchange logs \
                 into ({}); never the managed AmazonCognitoPowerUser policy. Cognito does not \
                 evaluate IAM policies for its public actions (InitiateAuth, \
                 RespondToAuthChallenge, GetTokensFromRefreshToken); they are listed all the \
                 same, so that the policy names everything the API calls.",
                ex.auth_flow.as_str(),
                plan::refresh_flow_name(ex.refresh_flow),
                ex.user_pool_id
            );
            role = Some((comment, resources::role(&actions, pool_arn)));
        }
        let several = plan.pools.len() > 1;
        let mut jwks_outputs = Vec::new();
        for pool in &plan.pools {
            let name = if several {
                camel([pool.name.as_str()])
            } else {
                String::new()
            };
            let id = self.id(format!("{name}JwksMethod"));
            let resource = self.resource(&pool.path);
            let uri = match &pool.jwks {
                JwksSource::Url(url) => Node::from(url.as_str()),
                JwksSource::StackRegion { pool_id } => sub(format!(
                    "https://cognito-idp.${{AWS::Region}}.${{AWS::URLSuffix}}/{}/.well-known/jwks.json",
                    sub_literal(pool_id)
                )),
            };
            let mut comment = vec![format!(
                "GET /{}: the JWKS of pool {:?}, from Cognito.",
                pool.path.join("/"),
                pool.name
            )];
            comment.extend(pool.remarks.iter().cloned());
            methods.push_commented(comment.join("\n"), id.as_str(), jwks_method(resource, uri));
            method_ids.push(id);
            jwks_outputs.push((format!("{name}JwksUrl"), pool));
        }

        let mut resources = Map::new();
        resources.push_commented("The private REST API.", API, rest_api());
        if let Some((comment, role)) = role {
            resources.push_commented(comment, ROLE, role);
        }
        for (path, id) in &self.tree {
            let parent = match self
                .tree
                .iter()
                .find(|(p, _)| p[..] == path[..path.len() - 1])
            {
                Some((_, parent)) => reference(parent),
                None => get_att(API, "RootResourceId"),
            };
            resources.push_commented(
                format!("/{}", path.join("/")),
                id.as_str(),
                path_resource(parent, path.last().expect("a resource has a path")),
            );
        }
        resources.append(methods);
        // A deployment is a snapshot: a logical id that changes with what it deploys makes
        // CloudFormation deploy a changed API instead of keeping the first snapshot.
        let digest = Sha256::digest(node::to_json(&resources));
        let hash: String = digest[..4].iter().map(|b| format!("{b:02X}")).collect();
        let deployment = format!("CognitoProxyDeployment{hash}");
        resources.push_commented(
            "A snapshot of the methods above. Its logical id ends in a hash of them, so that the \
             template of a changed configuration deploys the change.",
            deployment.as_str(),
            Map::new()
                .entry("Type", "AWS::ApiGateway::Deployment")
                .entry("DependsOn", method_ids)
                .entry(
                    "Properties",
                    Map::new()
                        .entry("RestApiId", reference(API))
                        .entry("Description", "cognito-gate: the Cognito proxy's methods"),
                ),
        );
        let (stage_comment, stage_name) = match &plan.stage {
            Some(s) => (
                format!("The stage {s:?}: the first path segment of private_api.base_url."),
                Node::from(s.as_str()),
            ),
            None => (
                "The stage: private_api.base_url has no path to name it, the StageName parameter \
                 does."
                    .to_string(),
                reference(STAGE_PARAM),
            ),
        };
        resources.push_commented(
            stage_comment,
            STAGE,
            Map::new().entry("Type", "AWS::ApiGateway::Stage").entry(
                "Properties",
                Map::new()
                    .entry("RestApiId", reference(API))
                    .entry("DeploymentId", reference(&deployment))
                    .entry("StageName", stage_name)
                    .entry(
                        "Description",
                        "cognito-gate: the stage private_api.base_url names",
                    ),
            ),
        );
        let default_stage = plan.stage.is_none().then_some(DEFAULT_STAGE);
        let root = Map::new()
            .entry("AWSTemplateFormatVersion", "2010-09-09")
            .entry(
                "Description",
                "cognito-gate: the private REST API through which the gateway calls Cognito and \
                 fetches the user pools' JWKS",
            )
            .comment("What to give when creating the stack.")
            .entry("Parameters", parameters(default_stage))
            .comment("What the API is made of.")
            .entry("Resources", resources)
            .comment("What to put in the gateway's configuration once the stack is created.")
            .entry("Outputs", outputs(&plan, &jwks_outputs));
        Template {
            header: header(&plan),
            root,
        }
    }
}

/// The base URL in its two in-VPC forms, the `x-apigw-api-id` value, each pool's JWKS URL.
fn outputs(plan: &Plan, jwks: &[(String, &plan::PoolPlan)]) -> Map {
    let stage = match &plan.stage {
        Some(s) => format!("/{}", sub_literal(s)),
        None => format!("/${{{STAGE_PARAM}}}"),
    };
    let path = |parts: &[String]| -> String {
        parts
            .iter()
            .map(|p| format!("/{}", sub_literal(p)))
            .collect()
    };
    let base = format!("{stage}{}", path(&plan.prefix));
    let host = format!("${{{API}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}");
    let output = |description: String, value: Node| {
        Map::new()
            .entry("Description", description)
            .entry("Value", value)
    };
    let mut outputs = Map::new()
        .entry(
            "ApiId",
            output(
                "The x-apigw-api-id header value (private_api.headers, cognito.jwks.headers) for \
                 calls to a VPC endpoint's own hostname"
                    .into(),
                reference(API),
            ),
        )
        .entry(
            "BaseUrl",
            output(
                "private_api.base_url, with private DNS enabled on the VPC endpoint".into(),
                sub(format!("https://{host}{base}")),
            ),
        )
        .entry(
            "VpceBaseUrl",
            output(
                "private_api.base_url through the first VPC endpoint's Route 53 alias (no \
                 private DNS, no x-apigw-api-id header)"
                    .into(),
                sub_with(
                    format!(
                        "https://${{{API}}}-${{VpcEndpointId}}.execute-api.${{AWS::Region}}.\
                         ${{AWS::URLSuffix}}{base}"
                    ),
                    Map::new().entry(
                        "VpcEndpointId",
                        Map::new()
                            .entry("Fn::Select", vec![Node::from(0i64), reference(VPCE_PARAM)]),
                    ),
                ),
            ),
        );
    for (name, pool) in jwks {
        outputs.push(
            name.as_str(),
            output(
                format!("{} of pool {} (private DNS form)", pool.key, pool.name),
                sub(format!("https://{host}{stage}{}", path(&pool.path))),
            ),
        );
    }
    outputs
}

fn header(plan: &Plan) -> String {
    let mut h = format!(
        "CloudFormation template made by cognito-gate {} (`cognito-gate aws template`) from its \
         configuration.\n\
         \n\
         The private REST API through which the gateway calls Cognito: one POST method per \
         Cognito action the configuration uses, one GET method per user pool serving its JWKS, a \
         resource policy that refuses requests from anywhere but the given VPC endpoints, the \
         role API Gateway calls Cognito with, and the deployment and stage that \
         private_api.base_url names.\n\
         \n\
         Create it (the role needs CAPABILITY_IAM):\n\
         \x20 aws cloudformation deploy --template-file cognito-proxy.yaml --stack-name \
         cognito-proxy \\\n\
         \x20   --capabilities CAPABILITY_IAM --parameter-overrides \
         VpcEndpointIds=vpce-0123456789abcdef0\n\
         then set private_api.base_url and cognito.jwks.url from its outputs.\n\
         \n\
         Not included: custom domain names, WAF, access and execution logs, stage throttling, \
         user pools in other accounts.",
        env!("CARGO_PKG_VERSION")
    );
    if !plan.notes.is_empty() {
        h.push_str("\n\nAbout this configuration:");
        for n in &plan.notes {
            h.push_str("\n- ");
            h.push_str(n);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_ids_are_alphanumeric_and_unique() {
        assert_eq!(camel(["admin-initiate-auth"]), "AdminInitiateAuth");
        assert_eq!(camel(["jwks", "staff.pool_2"]), "JwksStaffPool2");
        assert_eq!(camel(["2fa"]), "Path2fa");
        assert_eq!(camel(["-"]), "Path");
        let mut a = Assembly::default();
        assert_eq!(a.id("JwksMethod".into()), "JwksMethod");
        assert_eq!(a.id("JwksMethod".into()), "JwksMethod2");
        assert_eq!(a.id("JwksMethod".into()), "JwksMethod3");
    }

    #[test]
    fn resources_are_made_once_with_their_parents() {
        let mut a = Assembly::default();
        let p = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
        assert_eq!(a.resource(&[]), get_att(API, "RootResourceId"));
        assert_eq!(a.resource(&p("a/b-c")), reference("ABCResource"));
        assert_eq!(a.resource(&p("a/b_c")), reference("ABCResource2"));
        assert_eq!(a.resource(&p("a")), reference("AResource"));
        let paths: Vec<String> = a.tree.iter().map(|(p, _)| p.join("/")).collect();
        assert_eq!(paths, ["a", "a/b-c", "a/b_c"]);
    }
}
