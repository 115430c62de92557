//! `cognito-gate aws template`: the real binary on the shipped config.toml and on configurations
//! with real-looking AWS ids; the template checked by cfn-lint (errors and warnings both fail) and
//! by its content (JSON form): the actions and pool the role may use, one method per action and
//! pool at the configured paths, the resource policy's VPC endpoint condition, the stage. For
//! style "cognito-idp" with SigV4: Cognito's interface endpoint, its security group, and the
//! gateway's policy with only the Admin* actions on only the exchange's pool.
//!
//! cfn-lint comes from `CFN_LINT` (scripts/test.sh installs it in `.venv-moto`). Without it the
//! lint tests skip, except with `CI=true`, where they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_cognito-gate");

const REGION: &str = "ap-northeast-1";
const STAFF_POOL: &str = "ap-northeast-1_AbCdEf123";
const PARTNER_POOL: &str = "ap-northeast-1_XyZ987654";
const BASE_URL: &str = "https://abc123defg.execute-api.ap-northeast-1.amazonaws.com/prod";

/// Two pools (the partners' with the UPDATED issuer format), their keys under the private API,
/// an admin login flow with REFRESH_TOKEN_AUTH, default action paths.
fn two_pools_config() -> String {
    format!(
        r#"
[cognito]
clock_skew = "0s"

[[cognito.pools]]
name = "staff"
region = "{REGION}"
user_pool_id = "{STAFF_POOL}"
app_clients = ["staffclient0123456789abcd"]
[cognito.pools.jwks]
url = "{BASE_URL}/jwks/staff"

[[cognito.pools]]
name = "partners"
region = "{REGION}"
user_pool_id = "{PARTNER_POOL}"
issuer_format = "updated"
app_clients = ["partnerclient0123456789ab"]
[cognito.pools.jwks]
url = "{BASE_URL}/jwks/partners"

[private_api]
base_url = "{BASE_URL}"
style = "apigateway"

[exchange]
pool = "staff"
client_id = "staffclient0123456789abcd"
auth_flow = "ADMIN_NO_SRP_AUTH"
refresh_flow = "REFRESH_TOKEN_AUTH"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "https://internal.example.com"
auth = ["jwt"]
"#
    )
}

/// One pool with its keys from a file, USER_PASSWORD_AUTH with GetTokensFromRefreshToken, and
/// action paths of its own, nested under a base_url that has a path after the stage.
fn user_flow_config(dir: &TempDir) -> String {
    let jwks = dir.write("jwks.json", r#"{"keys":[]}"#);
    format!(
        r#"
[cognito]
region = "{REGION}"
user_pool_id = "{STAFF_POOL}"
app_clients = []
[cognito.jwks]
file = "{}"

[private_api]
base_url = "https://abc123defg.execute-api.ap-northeast-1.amazonaws.com/live/idp"
[private_api.paths]
initiate_auth = "/auth/initiate"
respond_to_auth_challenge = "/auth/respond"
get_tokens_from_refresh_token = "/tokens/refresh"

[exchange]
client_id = "userclient0123456789abcde"
auth_flow = "USER_PASSWORD_AUTH"
refresh_flow = "GetTokensFromRefreshToken"
"#,
        jwks.display()
    )
}

/// Cognito called straight through its PrivateLink endpoint, the admin flow signed with SigV4;
/// the keys from a private API (the endpoint is not known to serve them).
fn privatelink_config(refresh_flow: &str) -> String {
    format!(
        r#"
[cognito]
region = "{REGION}"
user_pool_id = "{STAFF_POOL}"
app_clients = ["staffclient0123456789abcd"]
[cognito.jwks]
url = "{BASE_URL}/jwks"

[private_api]
base_url = "https://cognito-idp.{REGION}.amazonaws.com"
style = "cognito-idp"
sign = "sigv4"

[exchange]
client_id = "staffclient0123456789abcd"
client_secret = "not-a-real-secret"
auth_flow = "ADMIN_USER_PASSWORD_AUTH"
refresh_flow = "{refresh_flow}"

[[routes]]
name = "legacy"
path_prefix = "/legacy"
upstream = "https://internal.example.com"
auth = ["basic"]
"#
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary from the repository root (the shipped config names files under certs/).
fn run(args: &[&str]) -> Out {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `aws template --config <config> --format <format>`, which must succeed.
fn template(config: &Path, format: &str) -> String {
    let out = run(&[
        "aws",
        "template",
        "--config",
        config.to_str().unwrap(),
        "--format",
        format,
    ]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
    out.stdout
}

fn template_json(config: &Path) -> Value {
    serde_json::from_str(&template(config, "json")).expect("the JSON form parses")
}

fn shipped_config() -> PathBuf {
    repo().join("config.toml")
}

/// The tool named by `var` (CFN_LINT), or `None` to skip; with `CI=true` a missing one fails.
fn tool(var: &str) -> Option<PathBuf> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match std::env::var(var) {
        Ok(p) => Some(PathBuf::from(p)),
        Err(_) => {
            assert!(!ci, "{var} is not set: run the tests with scripts/test.sh");
            eprintln!("skipping: {var} is not set (scripts/test.sh installs cfn-lint)");
            None
        }
    }
}

/// Writes both forms of the template for `config` and runs cfn-lint on them: no error (exit bit
/// 2) and no warning (bit 4); informational findings (bit 8) are not failures.
fn lint_both_forms(name: &str, config: &Path) {
    let Some(cfn_lint) = tool("CFN_LINT") else {
        return;
    };
    let dir = TempDir::new(&format!("cfn-lint-{name}"));
    let yaml = dir.write(&format!("{name}.yaml"), &template(config, "yaml"));
    let json = dir.write(&format!("{name}.json"), &template(config, "json"));
    let out = Command::new(&cfn_lint)
        .arg("--")
        .args([&yaml, &json])
        .output()
        .expect("cfn-lint runs");
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 8)),
        "cfn-lint exit {code:?} on {name}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The YAML form read by PyYAML (cfn-lint's venv has it) must be the JSON form: the comments
/// and the quoting change nothing.
fn assert_yaml_is_json(name: &str, config: &Path) {
    let Some(cfn_lint) = tool("CFN_LINT") else {
        return;
    };
    let python = cfn_lint.with_file_name("python");
    let dir = TempDir::new(&format!("pyyaml-{name}"));
    let yaml = dir.write("t.yaml", &template(config, "yaml"));
    let out = Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&yaml)
        .output()
        .expect("the venv's python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_yaml: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        from_yaml,
        template_json(config),
        "{name}: YAML and JSON differ"
    );
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

/// The resources of one type, by logical id.
fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// A method's path, walked up through its resources to the API's root.
fn path_of(t: &Value, method: &Value) -> String {
    let mut parts = Vec::new();
    let mut at = &method["Properties"]["ResourceId"];
    while let Some(id) = at["Ref"].as_str() {
        let r = &resources(t)[id];
        assert_eq!(r["Type"], "AWS::ApiGateway::Resource", "{id}");
        parts.push(r["Properties"]["PathPart"].as_str().unwrap().to_string());
        at = &r["Properties"]["ParentId"];
    }
    assert_eq!(
        *at,
        json!({"Fn::GetAtt": ["CognitoProxyApi", "RootResourceId"]})
    );
    parts.reverse();
    format!("/{}", parts.join("/"))
}

/// The methods of one HTTP verb: path -> integration.
fn methods<'a>(t: &'a Value, verb: &str) -> BTreeMap<String, &'a Value> {
    of_type(t, "AWS::ApiGateway::Method")
        .into_iter()
        .filter(|(_, m)| m["Properties"]["HttpMethod"] == verb)
        .map(|(_, m)| (path_of(t, m), &m["Properties"]["Integration"]))
        .collect()
}

/// path -> the Cognito action its POST method calls, checked to be an AWS-service integration
/// through the role, in `region` (a literal or `${AWS::Region}`).
fn actions_by_path(t: &Value, region: &str) -> BTreeMap<String, String> {
    let prefix = format!("arn:${{AWS::Partition}}:apigateway:{region}:cognito-idp:action/");
    methods(t, "POST")
        .into_iter()
        .map(|(path, i)| {
            assert_eq!(i["Type"], "AWS", "{path}");
            assert_eq!(i["IntegrationHttpMethod"], "POST", "{path}");
            assert_eq!(
                i["Credentials"],
                json!({"Fn::GetAtt": ["CognitoProxyRole", "Arn"]})
            );
            assert_eq!(
                i["RequestParameters"]["integration.request.header.Content-Type"],
                "'application/x-amz-json-1.1'"
            );
            assert_eq!(
                i["RequestTemplates"]["application/json"],
                "$input.json('$')"
            );
            let uri = i["Uri"]["Fn::Sub"].as_str().expect("Uri is an Fn::Sub");
            let action = uri
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{path}: {uri}"));
            (path, action.to_string())
        })
        .collect()
}

/// path -> the JWKS URL its GET method fetches (a string, or an Fn::Sub).
fn jwks_by_path(t: &Value) -> BTreeMap<String, Value> {
    methods(t, "GET")
        .into_iter()
        .map(|(path, i)| {
            assert_eq!(i["Type"], "HTTP", "{path}");
            assert_eq!(i["IntegrationHttpMethod"], "GET", "{path}");
            (path, i["Uri"].clone())
        })
        .collect()
}

/// The role's one policy statement.
fn role_statement(t: &Value) -> &Value {
    let roles = of_type(t, "AWS::IAM::Role");
    assert_eq!(roles.len(), 1);
    let (id, role) = roles[0];
    assert_eq!(id, "CognitoProxyRole");
    let props = &role["Properties"];
    assert_eq!(
        props["AssumeRolePolicyDocument"]["Statement"],
        json!([{
            "Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }])
    );
    assert!(props.get("ManagedPolicyArns").is_none());
    let policies = props["Policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1);
    let statements = policies[0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Effect"], "Allow");
    // No wildcard anywhere in what the role may do, or on what.
    let text = serde_json::to_string(&[&s["Action"], &s["Resource"]]).unwrap();
    assert!(!text.contains('*'), "{text}");
    assert!(!serde_json::to_string(role).unwrap().contains("PowerUser"));
    s
}

fn pool_arn(region: &str, pool: &str) -> Value {
    json!({"Fn::Sub": format!(
        "arn:${{AWS::Partition}}:cognito-idp:{region}:${{AWS::AccountId}}:userpool/{pool}"
    )})
}

fn stage_name(t: &Value) -> &Value {
    let stages = of_type(t, "AWS::ApiGateway::Stage");
    assert_eq!(stages.len(), 1);
    let stage = &stages[0].1["Properties"];
    // The stage deploys the one deployment, which waits for every method.
    let deployments = of_type(t, "AWS::ApiGateway::Deployment");
    assert_eq!(deployments.len(), 1);
    let (dep_id, dep) = deployments[0];
    assert_eq!(stage["DeploymentId"], json!({ "Ref": dep_id }));
    let mut waits: Vec<&str> = dep["DependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    waits.sort();
    let mut all: Vec<&str> = of_type(t, "AWS::ApiGateway::Method")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    all.sort();
    assert_eq!(waits, all);
    &stage["StageName"]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// cfn-lint
// ---------------------------------------------------------------------------------------------

#[test]
fn shipped_config_template_passes_cfn_lint() {
    lint_both_forms("shipped", &shipped_config());
}

#[test]
fn two_pool_template_passes_cfn_lint() {
    let dir = TempDir::new("lint-two-pools");
    lint_both_forms("two-pools", &dir.write("config.toml", &two_pools_config()));
}

#[test]
fn user_flow_template_passes_cfn_lint() {
    let dir = TempDir::new("lint-user-flow");
    let config = dir.write("config.toml", &user_flow_config(&dir));
    lint_both_forms("user-flow", &config);
}

#[test]
fn privatelink_template_passes_cfn_lint() {
    let dir = TempDir::new("lint-privatelink");
    let config = dir.write("config.toml", &privatelink_config("REFRESH_TOKEN_AUTH"));
    lint_both_forms("privatelink", &config);
    assert_yaml_is_json("privatelink", &config);
}

#[test]
fn yaml_and_json_describe_the_same_template() {
    let dir = TempDir::new("same-template");
    let two = dir.write("two.toml", &two_pools_config());
    let user = dir.write("user.toml", &user_flow_config(&dir));
    assert_yaml_is_json("shipped", &shipped_config());
    assert_yaml_is_json("two-pools", &two);
    assert_yaml_is_json("user-flow", &user);
}

// ---------------------------------------------------------------------------------------------
// Content
// ---------------------------------------------------------------------------------------------

#[test]
fn admin_flow_template_for_two_pools() {
    let dir = TempDir::new("two-pools");
    let t = template_json(&dir.write("config.toml", &two_pools_config()));

    // The role: exactly the admin flow's actions and InitiateAuth (REFRESH_TOKEN_AUTH), only on
    // the pool the exchange logs into.
    let s = role_statement(&t);
    assert_eq!(
        strings(&s["Action"]),
        [
            "cognito-idp:AdminInitiateAuth",
            "cognito-idp:AdminRespondToAuthChallenge",
            "cognito-idp:InitiateAuth"
        ]
    );
    assert_eq!(s["Resource"], json!([pool_arn(REGION, STAFF_POOL)]));

    // One POST per action at the default paths, calling the action in the pool's region.
    let expected: BTreeMap<String, String> = [
        ("/admin-initiate-auth", "AdminInitiateAuth"),
        (
            "/admin-respond-to-auth-challenge",
            "AdminRespondToAuthChallenge",
        ),
        ("/initiate-auth", "InitiateAuth"),
    ]
    .into_iter()
    .map(|(p, a)| (p.to_string(), a.to_string()))
    .collect();
    assert_eq!(actions_by_path(&t, REGION), expected);

    // One GET per pool, at the path its jwks.url names under base_url, from the pool's issuer.
    let jwks = jwks_by_path(&t);
    assert_eq!(
        jwks,
        BTreeMap::from([
            (
                "/jwks/partners".to_string(),
                json!(format!(
                    "https://issuer-cognito-idp.{REGION}.amazonaws.com/{PARTNER_POOL}/.well-known/jwks.json"
                ))
            ),
            (
                "/jwks/staff".to_string(),
                json!(format!(
                    "https://cognito-idp.{REGION}.amazonaws.com/{STAFF_POOL}/.well-known/jwks.json"
                ))
            ),
        ])
    );

    assert_eq!(*stage_name(&t), "prod");

    // The resource policy: allow, then deny anything not through the given VPC endpoints.
    let api = &resources(&t)["CognitoProxyApi"];
    assert_eq!(api["Type"], "AWS::ApiGateway::RestApi");
    let props = &api["Properties"];
    assert_eq!(
        props["EndpointConfiguration"],
        json!({"Types": ["PRIVATE"], "VpcEndpointIds": {"Ref": "VpcEndpointIds"}})
    );
    assert_eq!(
        props["Policy"]["Statement"],
        json!([
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "execute-api:Invoke",
                "Resource": "execute-api:/*"
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "execute-api:Invoke",
                "Resource": "execute-api:/*",
                "Condition": {"StringNotEquals": {"aws:SourceVpce": {"Ref": "VpcEndpointIds"}}}
            }
        ])
    );
    assert_eq!(
        t["Parameters"]["VpcEndpointIds"]["Type"],
        "CommaDelimitedList"
    );

    // Every method is open to whoever the resource policy lets in.
    for (id, m) in of_type(&t, "AWS::ApiGateway::Method") {
        assert_eq!(m["Properties"]["AuthorizationType"], "NONE", "{id}");
    }

    // Cognito's errors reach the gateway with their body and status class.
    let (_, admin) = of_type(&t, "AWS::ApiGateway::Method")
        .into_iter()
        .find(|(id, _)| *id == "AdminInitiateAuthMethod")
        .unwrap();
    let responses = &admin["Properties"]["Integration"]["IntegrationResponses"];
    assert_eq!(
        responses[0],
        json!({"StatusCode": "200"}),
        "the default passes through"
    );
    for (i, (status, pattern)) in [("400", "4\\d{2}"), ("502", "5\\d{2}")].iter().enumerate() {
        let r = &responses[i + 1];
        assert_eq!(r["StatusCode"], *status);
        assert_eq!(r["SelectionPattern"], *pattern);
        assert_eq!(
            r["ResponseParameters"]["method.response.header.x-amzn-ErrorType"],
            "integration.response.header.x-amzn-ErrorType"
        );
        assert!(
            r.get("ResponseTemplates").is_none(),
            "the body passes through"
        );
    }
    let method_statuses: Vec<&Value> = admin["Properties"]["MethodResponses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["StatusCode"])
        .collect();
    assert_eq!(
        method_statuses,
        [&json!("200"), &json!("400"), &json!("502")]
    );

    // Outputs: the base_url in both forms, the x-apigw-api-id value, each pool's JWKS URL.
    let outputs = &t["Outputs"];
    assert_eq!(outputs["ApiId"]["Value"], json!({"Ref": "CognitoProxyApi"}));
    assert_eq!(
        outputs["BaseUrl"]["Value"],
        json!({"Fn::Sub": "https://${CognitoProxyApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod"})
    );
    assert_eq!(
        outputs["VpceBaseUrl"]["Value"]["Fn::Sub"][0],
        "https://${CognitoProxyApi}-${VpcEndpointId}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod"
    );
    assert_eq!(
        outputs["StaffJwksUrl"]["Value"],
        json!({"Fn::Sub": "https://${CognitoProxyApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod/jwks/staff"})
    );
    assert!(outputs.get("PartnersJwksUrl").is_some());
}

#[test]
fn user_password_flow_with_its_own_paths() {
    let dir = TempDir::new("user-flow");
    let t = template_json(&dir.write("config.toml", &user_flow_config(&dir)));

    let s = role_statement(&t);
    assert_eq!(
        strings(&s["Action"]),
        [
            "cognito-idp:InitiateAuth",
            "cognito-idp:RespondToAuthChallenge",
            "cognito-idp:GetTokensFromRefreshToken"
        ]
    );
    assert_eq!(s["Resource"], json!([pool_arn(REGION, STAFF_POOL)]));

    // The configured paths, under base_url's path after the stage ("/live/idp": stage "live").
    let expected: BTreeMap<String, String> = [
        ("/idp/auth/initiate", "InitiateAuth"),
        ("/idp/auth/respond", "RespondToAuthChallenge"),
        ("/idp/tokens/refresh", "GetTokensFromRefreshToken"),
    ]
    .into_iter()
    .map(|(p, a)| (p.to_string(), a.to_string()))
    .collect();
    assert_eq!(actions_by_path(&t, REGION), expected);
    // Nested paths share their parents: idp, idp/auth, idp/tokens, and one per action.
    assert_eq!(of_type(&t, "AWS::ApiGateway::Resource").len(), 7);

    // A pool without jwks.url gets /jwks under base_url.
    assert_eq!(
        jwks_by_path(&t),
        BTreeMap::from([(
            "/idp/jwks".to_string(),
            json!(format!(
                "https://cognito-idp.{REGION}.amazonaws.com/{STAFF_POOL}/.well-known/jwks.json"
            ))
        )])
    );
    assert_eq!(*stage_name(&t), "live");
    assert_eq!(
        t["Outputs"]["BaseUrl"]["Value"],
        json!({"Fn::Sub": "https://${CognitoProxyApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/live/idp"})
    );
}

#[test]
fn shipped_config_template() {
    let t = template_json(&shipped_config());
    // The dev pool names no region: the stack's region, and the configured pool id.
    let s = role_statement(&t);
    assert_eq!(
        strings(&s["Action"]),
        [
            "cognito-idp:AdminInitiateAuth",
            "cognito-idp:AdminRespondToAuthChallenge",
            "cognito-idp:InitiateAuth"
        ]
    );
    assert_eq!(
        s["Resource"],
        json!([pool_arn("${AWS::Region}", "dev-pool")])
    );
    assert_eq!(actions_by_path(&t, "${AWS::Region}").len(), 3);
    assert_eq!(
        jwks_by_path(&t),
        BTreeMap::from([(
            "/jwks".to_string(),
            json!({"Fn::Sub": "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/dev-pool/.well-known/jwks.json"})
        )])
    );
    assert_eq!(*stage_name(&t), "dev");
    // The YAML says why.
    let yaml = template(&shipped_config(), "yaml");
    assert!(
        yaml.contains("is not a Cognito issuer"),
        "the YAML explains the stand-in pool:\n{yaml}"
    );
}

#[test]
fn without_exchange_the_api_serves_only_the_keys() {
    let dir = TempDir::new("jwks-only");
    let config = dir.write(
        "config.toml",
        &format!(
            r#"
[cognito]
region = "{REGION}"
user_pool_id = "{STAFF_POOL}"
app_clients = []
[cognito.jwks]
url = "{BASE_URL}/keys"

[private_api]
base_url = "{BASE_URL}"
"#
        ),
    );
    let t = template_json(&config);
    assert!(methods(&t, "POST").is_empty());
    assert!(of_type(&t, "AWS::IAM::Role").is_empty());
    assert_eq!(
        jwks_by_path(&t).keys().collect::<Vec<_>>(),
        ["/keys"],
        "the path jwks.url names"
    );
}

/// The PrivateLink template's one policy statement, checked to be the only IAM resource and to
/// hold no wildcard.
fn gateway_policy_statement(t: &Value) -> &Value {
    assert!(
        of_type(t, "AWS::IAM::Role").is_empty(),
        "the gateway's role is the operator's"
    );
    let policies = of_type(t, "AWS::IAM::ManagedPolicy");
    assert_eq!(policies.len(), 1);
    let (id, policy) = policies[0];
    assert_eq!(id, "GatewayCognitoPolicy");
    let text = serde_json::to_string(policy).unwrap();
    assert!(!text.contains('*'), "{text}");
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Effect"], "Allow");
    &statements[0]
}

#[test]
fn privatelink_template_for_the_admin_flow() {
    let dir = TempDir::new("privatelink");
    let config = dir.write("config.toml", &privatelink_config("REFRESH_TOKEN_AUTH"));
    let t = template_json(&config);

    // No API Gateway: only the endpoint, its security group and the gateway's policy.
    let mut types: Vec<&str> = resources(&t)
        .values()
        .map(|r| r["Type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "AWS::EC2::SecurityGroup",
            "AWS::EC2::VPCEndpoint",
            "AWS::IAM::ManagedPolicy"
        ]
    );

    // The interface endpoint for Cognito in the pool's region, private DNS on, in the given
    // VPC and subnets, behind its own security group.
    let (_, endpoint) = of_type(&t, "AWS::EC2::VPCEndpoint")[0];
    let props = &endpoint["Properties"];
    assert_eq!(props["VpcEndpointType"], "Interface");
    assert_eq!(
        props["ServiceName"],
        format!("com.amazonaws.{REGION}.cognito-idp")
    );
    assert_eq!(props["PrivateDnsEnabled"], true);
    assert_eq!(props["VpcId"], json!({"Ref": "VpcId"}));
    assert_eq!(props["SubnetIds"], json!({"Ref": "SubnetIds"}));
    assert_eq!(
        props["SecurityGroupIds"],
        json!([{"Fn::GetAtt": ["CognitoEndpointSecurityGroup", "GroupId"]}])
    );

    // The security group admits TCP 443 from the gateway's group, nothing else.
    let sg = &resources(&t)["CognitoEndpointSecurityGroup"]["Properties"];
    assert_eq!(sg["VpcId"], json!({"Ref": "VpcId"}));
    let ingress = sg["SecurityGroupIngress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0]["IpProtocol"], "tcp");
    assert_eq!(ingress[0]["FromPort"], 443);
    assert_eq!(ingress[0]["ToPort"], 443);
    assert_eq!(
        ingress[0]["SourceSecurityGroupId"],
        json!({"Ref": "GatewaySecurityGroupId"})
    );

    // The policy: exactly the Admin* actions (InitiateAuth, the refresh, is not IAM's to
    // authorise), exactly on the exchange's pool, attached to GatewayRoleName when given.
    let s = gateway_policy_statement(&t);
    assert_eq!(
        s["Action"],
        json!([
            "cognito-idp:AdminInitiateAuth",
            "cognito-idp:AdminRespondToAuthChallenge"
        ])
    );
    assert_eq!(s["Resource"], json!([pool_arn(REGION, STAFF_POOL)]));
    assert_eq!(
        resources(&t)["GatewayCognitoPolicy"]["Properties"]["Roles"],
        json!({"Fn::If": [
            "AttachToGatewayRole",
            [{"Ref": "GatewayRoleName"}],
            {"Ref": "AWS::NoValue"}
        ]})
    );
    assert_eq!(
        t["Conditions"]["AttachToGatewayRole"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "GatewayRoleName"}, ""]}]})
    );

    // The parameters, typed so that the console offers the account's VPCs, subnets and groups.
    let params = &t["Parameters"];
    let types: BTreeMap<&str, &str> = params
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v["Type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        BTreeMap::from([
            ("GatewayRoleName", "String"),
            ("GatewaySecurityGroupId", "AWS::EC2::SecurityGroup::Id"),
            ("SubnetIds", "List<AWS::EC2::Subnet::Id>"),
            ("VpcId", "AWS::EC2::VPC::Id"),
        ])
    );
    assert_eq!(params["GatewayRoleName"]["Default"], "");

    // Outputs: the endpoint, the policy, the base_url to configure.
    let outputs = &t["Outputs"];
    assert_eq!(
        outputs["VpcEndpointId"]["Value"],
        json!({"Ref": "CognitoEndpoint"})
    );
    assert_eq!(
        outputs["PolicyArn"]["Value"],
        json!({"Ref": "GatewayCognitoPolicy"})
    );
    assert_eq!(
        outputs["BaseUrl"]["Value"],
        json!({"Fn::Sub": format!("https://cognito-idp.{REGION}.${{AWS::URLSuffix}}")})
    );

    // The YAML explains each part, and Cognito's two limits.
    let yaml = template(&config, "yaml");
    let comments = comment_text(&yaml);
    for said in [
        "A user pool that has a domain (hosted UI, managed login) cannot be used through the \
         endpoint",
        "Whether the endpoint serves the pools' JWKS (/.well-known/jwks.json) is unverified",
        "Cognito does not authorise InitiateAuth, RespondToAuthChallenge or \
         GetTokensFromRefreshToken with IAM",
        "The endpoint's security group",
        "The interface endpoint for Cognito user pools in ap-northeast-1",
        "The gateway's permissions",
    ] {
        assert!(comments.contains(said), "the YAML says {said:?}:\n{yaml}");
    }
    // A realistic configuration needs no remark.
    assert!(!comments.contains("About this configuration"), "{yaml}");
}

/// The YAML's comments as one line of text, wherever they wrap.
fn comment_text(yaml: &str) -> String {
    let lines: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .map(str::trim)
        .collect();
    lines.join(" ")
}

#[test]
fn privatelink_policy_leaves_get_tokens_from_refresh_token_out() {
    let dir = TempDir::new("privatelink-gtfrt");
    let config = dir.write(
        "config.toml",
        &privatelink_config("GetTokensFromRefreshToken"),
    );
    let t = template_json(&config);
    let s = gateway_policy_statement(&t);
    assert_eq!(
        s["Action"],
        json!([
            "cognito-idp:AdminInitiateAuth",
            "cognito-idp:AdminRespondToAuthChallenge"
        ])
    );
    assert_eq!(s["Resource"], json!([pool_arn(REGION, STAFF_POOL)]));
    let yaml = template(&config, "yaml");
    assert!(
        comment_text(&yaml).contains("It also calls GetTokensFromRefreshToken"),
        "{yaml}"
    );
}

#[test]
fn unsigned_cognito_idp_is_refused_naming_the_sign_key() {
    let dir = TempDir::new("privatelink-unsigned");
    let unsigned = privatelink_config("REFRESH_TOKEN_AUTH").replace("sign = \"sigv4\"\n", "");
    let config = dir.write("config.toml", &unsigned);
    for format in ["yaml", "json"] {
        let out = run(&[
            "aws",
            "template",
            "--config",
            config.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(out.stdout.is_empty());
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr.starts_with("private_api.sign: "),
            "{}",
            out.stderr
        );
        for said in [
            "needs no AWS resource beyond an interface VPC endpoint for \
             com.amazonaws.ap-northeast-1.cognito-idp",
            "Set sign = \"sigv4\"",
        ] {
            assert!(out.stderr.contains(said), "{said:?} in {}", out.stderr);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_sections_are_named() {
    let dir = TempDir::new("missing");
    let config = dir.write(
        "config.toml",
        r#"
[[routes]]
name = "public"
path_prefix = "/"
upstream = "builtin:echo"
auth = ["none"]
"#,
    );
    let out = run(&["aws", "template", "--config", config.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].starts_with("cognito: aws template needs the [cognito] section"),
        "{}",
        out.stderr
    );
    assert!(
        lines[1].starts_with("private_api: aws template needs the [private_api] section"),
        "{}",
        out.stderr
    );
}

#[test]
fn unusable_settings_are_named() {
    let dir = TempDir::new("unusable");
    // Two actions on one path, and a path API Gateway cannot have.
    let clash = two_pools_config().replace(
        "style = \"apigateway\"",
        "style = \"apigateway\"\n[private_api.paths]\nadmin_respond_to_auth_challenge = \"/admin-initiate-auth\"\ninitiate_auth = \"/refresh/~x\"",
    );
    let out = run(&[
        "aws",
        "template",
        "--config",
        dir.write("clash.toml", &clash).to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "private_api.paths.initiate_auth: \"/refresh/~x\": API Gateway path parts are letters, \
         digits, '.', '_' and '-' (and none is empty)\n\
         private_api.paths.admin_respond_to_auth_challenge: POST /admin-initiate-auth is also \
         private_api.paths.admin_initiate_auth's: one method per path\n"
    );

    // Cognito called directly, unsigned: nothing for a template to make.
    let direct = two_pools_config().replace("style = \"apigateway\"", "style = \"cognito-idp\"");
    let out = run(&[
        "aws",
        "template",
        "--config",
        dir.write("direct.toml", &direct).to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .starts_with("private_api.sign: \"none\" with style \"cognito-idp\""),
        "{}",
        out.stderr
    );
}

#[test]
fn format_is_yaml_or_json() {
    let out = run(&[
        "aws",
        "template",
        "--config",
        shipped_config().to_str().unwrap(),
        "--format",
        "xml",
    ]);
    assert_eq!(out.code, Some(64), "a usage error");
    assert!(out.stderr.contains("invalid value 'xml'"), "{}", out.stderr);
    assert!(out.stdout.is_empty());

    // YAML by default, and it carries comments; JSON has none.
    let default = run(&[
        "aws",
        "template",
        "--config",
        shipped_config().to_str().unwrap(),
    ]);
    assert_eq!(default.code, Some(0));
    assert_eq!(default.stdout, template(&shipped_config(), "yaml"));
    assert!(default.stdout.starts_with("# "));
    assert!(default
        .stdout
        .contains("\nAWSTemplateFormatVersion: \"2010-09-09\"\n"));
    serde_json::from_str::<Value>(&template(&shipped_config(), "json")).unwrap();
}
