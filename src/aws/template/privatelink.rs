//! The template of `[private_api] style = "cognito-idp"` with `sign = "sigv4"`: Cognito called
//! straight through its PrivateLink endpoint, the Admin* actions signed by the gateway's own IAM
//! identity. There is no API Gateway in the way, so what the deployment needs is the interface VPC
//! endpoint (private DNS on, so that `cognito-idp.{region}.amazonaws.com`, the host the gateway
//! calls and signs for, resolves to it inside the VPC), a security group that admits the gateway,
//! and an IAM managed policy with only the Admin* actions the exchange calls, only on its user
//! pool, for the role the gateway runs as.
//!
//! Cognito's own limits (COGNITO.md §7) are stated in the template, not hidden: a pool that has a
//! domain cannot be used through the endpoint, and whether the endpoint serves the JWKS is
//! unverified.
//!
//! Unsigned `cognito-idp` (an emulator, or the unauthenticated flows) is refused: it needs nothing
//! in AWS beyond the endpoint.

mod resources;

use super::node::{Map, Node};
use super::plan::{exchange_region, pool_key, refresh_flow_name};
use super::resources::{reference, sub, sub_literal};
use super::Template;
use crate::config::{AuthFlow, Config, ConfigError, PrivateApiConfig, RefreshFlow, Signing};
use crate::exchange::api::Action;
use resources::*;

/// What the configuration asks of AWS.
struct LinkPlan {
    /// The user pool's region: Cognito serves a pool only there, so the endpoint is for it.
    region: String,
    user_pool_id: String,
    auth_flow: AuthFlow,
    refresh_flow: RefreshFlow,
    /// The Admin* actions the exchange calls: the ones Cognito authorises with IAM.
    admin: Vec<Action>,
    /// The others it calls: Cognito's unauthenticated actions, which no IAM policy governs.
    public: Vec<Action>,
    /// What a reader of this configuration's template should know.
    notes: Vec<String>,
}

/// The template for a `cognito-idp` configuration, or every reason it cannot be made.
pub(super) fn template(
    config: &Config,
    api: &PrivateApiConfig,
) -> Result<Template, Vec<ConfigError>> {
    let plan = plan(config, api)?;
    Ok(Template {
        header: header(&plan),
        root: root(&plan),
    })
}

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

fn plan(config: &Config, api: &PrivateApiConfig) -> Result<LinkPlan, Vec<ConfigError>> {
    let Signing::SigV4 {
        region: signing_region,
    } = &api.sign
    else {
        let region = config
            .exchange
            .as_ref()
            .and_then(|ex| exchange_region(config.cognito.as_ref(), ex))
            .unwrap_or_else(|| "REGION".to_string());
        return Err(vec![error(
            "private_api.sign",
            format!(
                "\"none\" with style \"cognito-idp\" (an emulator, or Cognito's unauthenticated \
                 actions through its VPC endpoint) needs no AWS resource beyond an interface VPC \
                 endpoint for com.amazonaws.{region}.cognito-idp: aws template has nothing to \
                 make. Set sign = \"sigv4\" for the template of the Admin* flows (the endpoint, \
                 its security group and the gateway's IAM policy), or style = \"apigateway\" for \
                 a private API's"
            ),
        )]);
    };
    let Some(ex) = &config.exchange else {
        return Err(vec![error(
            "exchange",
            "aws template for style \"cognito-idp\" needs the [exchange] section: the IAM \
             policy names its actions and its user pool",
        )]);
    };
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let (admin, public): (Vec<Action>, Vec<Action>) =
        Action::used_by(ex.auth_flow, ex.refresh_flow)
            .into_iter()
            .partition(|a| a.name().starts_with("Admin"));
    if admin.is_empty() {
        errors.push(error(
            "exchange.auth_flow",
            format!(
                "{} calls no Admin* action, and Cognito authorises only those with IAM: with \
                 sign = \"sigv4\" there is no policy to make. Use ADMIN_USER_PASSWORD_AUTH or \
                 ADMIN_NO_SRP_AUTH, or sign = \"none\" (which needs only the VPC endpoint)",
                ex.auth_flow.as_str()
            ),
        ));
    }
    let region = match exchange_region(config.cognito.as_ref(), ex) {
        Some(pool_region) => {
            if pool_region != *signing_region {
                errors.push(error(
                    "private_api.region",
                    format!(
                        "the gateway signs for {signing_region}, but the exchange's user pool \
                         {:?} is in {pool_region}: Cognito serves a pool only in its own region",
                        ex.user_pool_id
                    ),
                ));
            }
            pool_region
        }
        None => {
            notes.push(format!(
                "exchange.user_pool_id {:?} names no region: the pool is taken to be in \
                 {signing_region}, the region the gateway signs for.",
                ex.user_pool_id
            ));
            signing_region.clone()
        }
    };
    let host = cognito_host(&region);
    let base = &api.base_url;
    if base.scheme() != "https"
        || base.host_str() != Some(host.as_str())
        || base.port().is_some()
        || base.path() != "/"
    {
        notes.push(format!(
            "private_api.base_url ({base}) is not Cognito's endpoint in {region}: with this \
             endpoint's private DNS, set it to the BaseUrl output, https://{host}."
        ));
    }
    if let Some(cognito) = &config.cognito {
        for (i, pool) in cognito.pools.iter().enumerate() {
            let Some(url) = &pool.jwks.url else { continue };
            let on_cognito = url.host_str().is_some_and(|h| {
                (h.starts_with("cognito-idp.") || h.starts_with("issuer-cognito-idp."))
                    && h.ends_with(".amazonaws.com")
            });
            if on_cognito {
                let key = pool_key(cognito, i);
                notes.push(format!(
                    "{key}.jwks.url ({url}) is on Cognito's own host: whether its keys can be \
                     fetched through this endpoint is unverified. Serve them from a private API's \
                     jwks resource, or ship them as {key}.jwks.file."
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(LinkPlan {
        region,
        user_pool_id: ex.user_pool_id.clone(),
        auth_flow: ex.auth_flow,
        refresh_flow: ex.refresh_flow,
        admin,
        public,
        notes,
    })
}

/// Cognito's regional endpoint, which the endpoint's private DNS takes over.
fn cognito_host(region: &str) -> String {
    format!("cognito-idp.{region}.amazonaws.com")
}

fn names(actions: &[Action]) -> String {
    let names: Vec<&str> = actions.iter().map(|a| a.name()).collect();
    names.join(", ")
}

fn root(plan: &LinkPlan) -> Map {
    let service = format!("com.amazonaws.{}.cognito-idp", plan.region);
    let pool_arn = sub(format!(
        "arn:${{AWS::Partition}}:cognito-idp:{}:${{AWS::AccountId}}:userpool/{}",
        plan.region,
        sub_literal(&plan.user_pool_id)
    ));
    let mut policy_comment = format!(
        "The gateway's permissions: only the Admin* actions the exchange calls (auth_flow {}), \
         only on the user pool it logs into ({}); no wildcard.",
        plan.auth_flow.as_str(),
        plan.user_pool_id
    );
    if !plan.public.is_empty() {
        policy_comment.push_str(&format!(
            " It also calls {} (refresh_flow {}), which is not listed: Cognito does not \
             authorise InitiateAuth, RespondToAuthChallenge or GetTokensFromRefreshToken with \
             IAM.",
            names(&plan.public),
            refresh_flow_name(plan.refresh_flow)
        ));
    }
    policy_comment.push_str(&format!(
        "\nAttached to the role {ROLE_PARAM} names; left empty, attach the PolicyArn output to \
         the identity the gateway signs with yourself."
    ));
    let mut resources = Map::new();
    resources.push_commented(
        "The endpoint's security group: HTTPS only, only from the gateway's security group \
         (GatewaySecurityGroupId), whose egress must allow it.",
        ENDPOINT_SG,
        security_group(),
    );
    resources.push_commented(
        format!(
            "The interface endpoint for Cognito user pools in {region}, in the gateway's subnets. \
             Private DNS on: https://{host} (private_api.base_url, the host the gateway signs \
             for) resolves to the endpoint's addresses for every caller in the VPC.\n\
             Cognito refuses, through any VPC endpoint, every request for a user pool that has a \
             domain (hosted UI, managed login): such a pool needs a private API (style \
             \"apigateway\").\n\
             The endpoint policy is left at its default (full access): with private DNS this is \
             every caller's route to Cognito in the VPC; the gateway's own calls are bounded by \
             the IAM policy below.",
            region = plan.region,
            host = cognito_host(&plan.region)
        ),
        ENDPOINT,
        endpoint(&service),
    );
    resources.push_commented(policy_comment, POLICY, policy(&plan.admin, pool_arn));
    Map::new()
        .entry("AWSTemplateFormatVersion", "2010-09-09")
        .entry(
            "Description",
            "cognito-gate: the interface VPC endpoint through which the gateway calls Cognito, \
             and the IAM policy of the identity it signs with",
        )
        .comment("What to give when creating the stack.")
        .entry("Parameters", parameters())
        .comment(format!(
            "{ROLE_PARAM} given: the policy is attached to that role."
        ))
        .entry("Conditions", Map::new().entry(ATTACH, attach_condition()))
        .comment("What the gateway's way to Cognito is made of.")
        .entry("Resources", resources)
        .comment("What to put in the gateway's configuration once the stack is created.")
        .entry("Outputs", outputs(plan))
}

fn outputs(plan: &LinkPlan) -> Map {
    let output = |description: &str, value: Node| {
        Map::new()
            .entry("Description", description)
            .entry("Value", value)
    };
    Map::new()
        .entry(
            "VpcEndpointId",
            output(
                "The interface VPC endpoint for Cognito",
                reference(ENDPOINT),
            ),
        )
        .entry(
            "PolicyArn",
            output(
                "The gateway's IAM policy: attach it to the role the gateway signs with when \
                 GatewayRoleName is empty",
                reference(POLICY),
            ),
        )
        .entry(
            "BaseUrl",
            output(
                "private_api.base_url: Cognito's regional endpoint, which private DNS resolves to \
                 the VPC endpoint",
                sub(format!(
                    "https://cognito-idp.{}.${{AWS::URLSuffix}}",
                    plan.region
                )),
            ),
        )
}

fn header(plan: &LinkPlan) -> String {
    let region = &plan.region;
    let mut h = format!(
        "CloudFormation template made by cognito-gate {version} (`cognito-gate aws template`) \
         from its configuration.\n\
         \n\
         What the gateway needs in AWS to call Cognito straight through its PrivateLink endpoint \
         (private_api style \"cognito-idp\", sign \"sigv4\"): an interface VPC endpoint for \
         com.amazonaws.{region}.cognito-idp with private DNS, so that https://{host} resolves \
         inside the VPC; a security group that admits the gateway to it; and an IAM policy that \
         lets the identity the gateway signs with call {actions} on user pool {pool}, and \
         nothing else.\n\
         \n\
         Two limits of Cognito's PrivateLink:\n\
         - A user pool that has a domain (hosted UI, managed login) cannot be used through the \
         endpoint: Cognito refuses every request for it that comes through a VPC endpoint. Such \
         a pool needs a private API (style \"apigateway\", whose aws template makes one).\n\
         - Whether the endpoint serves the pools' JWKS (/.well-known/jwks.json) is unverified. \
         Give the keys another way: a private API's jwks resource (aws template of a \
         configuration with style \"apigateway\" and no [exchange] makes only those) or the \
         [cognito.jwks] file.\n\
         \n\
         Create it in {region}, the user pool's region (the policy needs CAPABILITY_IAM):\n\
         \x20 aws cloudformation deploy --region {region} --template-file cognito-endpoint.yaml \
         \\\n\
         \x20   --stack-name cognito-endpoint --capabilities CAPABILITY_IAM --parameter-overrides \
         \\\n\
         \x20   VpcId=vpc-0123456789abcdef0 SubnetIds=subnet-0123456789abcdef0,subnet-0fedcba9876543210 \
         \\\n\
         \x20   GatewaySecurityGroupId=sg-0123456789abcdef0 GatewayRoleName=cognito-gate-task\n\
         then set private_api.base_url to its BaseUrl output.\n\
         \n\
         Not included: the gateway's own role (give its name), an endpoint policy, interface \
         endpoints for other services the gateway's credential provider may call (sts for web \
         identity).",
        version = env!("CARGO_PKG_VERSION"),
        host = cognito_host(region),
        actions = names(&plan.admin),
        pool = plan.user_pool_id,
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
    use crate::aws::node;
    use crate::config::Source;

    const POOL: &str = r#"
[cognito]
region = "ap-northeast-1"
user_pool_id = "ap-northeast-1_AbCdEf123"
app_clients = []
[cognito.jwks]
url = "https://abc123defg.execute-api.ap-northeast-1.amazonaws.com/prod/jwks"
"#;
    const SIGNED: &str = r#"
[private_api]
base_url = "https://cognito-idp.ap-northeast-1.amazonaws.com"
style = "cognito-idp"
sign = "sigv4"
"#;

    fn config(toml: &str) -> Config {
        let source = Source {
            name: "test".into(),
            base_dir: std::env::temp_dir(),
        };
        Config::parse(toml, &source).unwrap()
    }

    fn made(toml: &str) -> Result<(LinkPlan, serde_json::Value), Vec<ConfigError>> {
        let c = config(toml);
        let plan = plan(&c, c.private_api.as_ref().unwrap())?;
        let json = serde_json::from_str(&node::to_json(&root(&plan))).unwrap();
        Ok((plan, json))
    }

    fn keys(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn the_policy_lists_only_the_admin_actions_on_the_pool() {
        for auth in ["ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"] {
            for refresh in ["REFRESH_TOKEN_AUTH", "GetTokensFromRefreshToken"] {
                let (plan, t) = made(&format!(
                    "{POOL}{SIGNED}[exchange]\nclient_id = \"c\"\nauth_flow = \"{auth}\"\n\
                     refresh_flow = \"{refresh}\"\n"
                ))
                .unwrap();
                let statement =
                    &t["Resources"][POLICY]["Properties"]["PolicyDocument"]["Statement"][0];
                assert_eq!(
                    statement["Action"],
                    serde_json::json!([
                        "cognito-idp:AdminInitiateAuth",
                        "cognito-idp:AdminRespondToAuthChallenge"
                    ]),
                    "{auth} {refresh}"
                );
                assert_eq!(
                    statement["Resource"][0]["Fn::Sub"],
                    "arn:${AWS::Partition}:cognito-idp:ap-northeast-1:${AWS::AccountId}:\
                     userpool/ap-northeast-1_AbCdEf123"
                );
                assert_eq!(plan.public.len(), 1, "the refresh action is left out");
                assert!(plan.notes.is_empty(), "{:?}", plan.notes);
                assert_eq!(
                    t["Resources"][ENDPOINT]["Properties"]["ServiceName"],
                    "com.amazonaws.ap-northeast-1.cognito-idp"
                );
            }
        }
    }

    #[test]
    fn what_needs_no_policy_or_cannot_work_is_refused_by_key() {
        let unsigned = SIGNED.replace("sign = \"sigv4\"\n", "");
        let errors = made(&format!("{POOL}{unsigned}[exchange]\nclient_id = \"c\"\n"))
            .err()
            .unwrap();
        assert_eq!(keys(&errors), ["private_api.sign"]);
        assert!(errors[0]
            .message
            .contains("endpoint for com.amazonaws.ap-northeast-1.cognito-idp"));

        let errors = made(&format!(
            "{POOL}{SIGNED}[exchange]\nclient_id = \"c\"\nauth_flow = \"USER_PASSWORD_AUTH\"\n"
        ))
        .err()
        .unwrap();
        assert_eq!(keys(&errors), ["exchange.auth_flow"]);

        let errors = made(&format!(
            "{POOL}{SIGNED}region = \"eu-west-1\"\n[exchange]\nclient_id = \"c\"\n"
        ))
        .err()
        .unwrap();
        assert_eq!(keys(&errors), ["private_api.region"]);
        assert!(errors[0].message.contains("is in ap-northeast-1"));

        let errors = made(&format!("{POOL}{SIGNED}")).err().unwrap();
        assert_eq!(keys(&errors), ["exchange"]);
    }

    #[test]
    fn base_url_and_jwks_on_cognito_are_noted() {
        let pool = POOL.replace(
            "abc123defg.execute-api.ap-northeast-1.amazonaws.com/prod/jwks",
            "cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_AbCdEf123/.well-known/jwks.json",
        );
        let api = SIGNED.replace(".amazonaws.com\"", ".amazonaws.com:8443/x\"");
        let (plan, _) = made(&format!("{pool}{api}[exchange]\nclient_id = \"c\"\n")).unwrap();
        assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
        assert!(plan.notes[0].starts_with("private_api.base_url ("));
        assert!(plan.notes[0].ends_with("https://cognito-idp.ap-northeast-1.amazonaws.com."));
        assert!(plan.notes[1].starts_with("cognito.jwks.url ("));
        assert!(plan.notes[1].contains("cognito.jwks.file"));
    }
}
