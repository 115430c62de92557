//! The command line: parse arguments, load the configuration, run, map errors to exit codes.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cognito_gate::config::{Config, ConfigErrors, Source, EMBEDDED_DEFAULT};

#[derive(Parser)]
#[command(
    name = "cognito-gate",
    version,
    about = "In-VPC Cognito gateway: verifies JWTs like an API Gateway Cognito authorizer and forwards to private APIs"
)]
struct Cli {
    /// Configuration file [default: ./config.toml, else the embedded default]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, print a summary, exit 0 (valid) or 1 (invalid).
    CheckConfig,
    /// Explain what the authorizer decides for one token: allow/deny, which check, the claims.
    /// Exit code 0 = allow, 2 = deny, 1 = error.
    VerifyToken {
        /// The route whose policy applies [default: the first jwt route]
        #[arg(long, value_name = "NAME")]
        route: Option<String>,
        /// The token (raw or "Bearer <token>"), or "-" to read it from stdin
        token: String,
    },
    /// Log in through the private API and print the Cognito-shaped result. The password is read
    /// from stdin (a no-echo prompt on a terminal). Exit code 0 = tokens, 3 = a challenge must be
    /// answered (printed), 2 = wrong username or password, 4 = the private API is unavailable,
    /// 1 = configuration error.
    Login {
        #[arg(long, value_name = "U")]
        username: String,
    },
    /// The AWS side: what the configuration needs in AWS, and whether it works.
    Aws {
        #[command(subcommand)]
        command: AwsCommand,
    },
}

#[derive(Subcommand)]
enum AwsCommand {
    /// Print the CloudFormation template of what this configuration needs in AWS: the private
    /// API that proxies Cognito, or (style cognito-idp, sign sigv4) Cognito's interface endpoint
    /// and the gateway's IAM policy. Exit code 0, or 1 when the configuration lacks what it needs.
    Template {
        #[arg(long, value_enum, default_value = "yaml")]
        format: TemplateFormat,
    },
    /// Probe every dependency in AWS (each pool's JWKS, the private API or Cognito endpoint, the
    /// x-apigw-api-id header, the integration role or SigV4 identity, SECRET_HASH) and print a
    /// checklist with what to fix. Exit code 0 = all pass, 1 = a check failed.
    Check,
}

#[derive(Clone, Copy, ValueEnum)]
enum TemplateFormat {
    /// With comments explaining each part
    Yaml,
    /// The same content, without comments
    Json,
}

const EXIT_CONFIG: u8 = 1;
const EXIT_DENY: u8 = 2;
const EXIT_CHALLENGE: u8 = 3;
const EXIT_UNAVAILABLE: u8 = 4;

fn load(path: Option<&PathBuf>) -> Result<(Config, String), ConfigErrors> {
    match path {
        Some(p) => Config::load(p).map(|c| (c, p.display().to_string())),
        None => {
            let default = PathBuf::from("config.toml");
            if default.is_file() {
                Config::load(&default).map(|c| (c, "config.toml".to_string()))
            } else {
                let source = Source {
                    name: "embedded default config".into(),
                    base_dir: PathBuf::from("."),
                };
                Config::parse(EMBEDDED_DEFAULT, &source).map(|c| (c, source.name))
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, source) = match load(cli.config.as_ref()) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Some(Command::CheckConfig) => {
            println!("{source}: OK");
            print!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Some(Command::VerifyToken { route, token }) => verify_token(config, route, token),
        Some(Command::Login { username }) => login(config, &username),
        Some(Command::Aws { command }) => match command {
            AwsCommand::Template { format } => aws_template(&config, format),
            AwsCommand::Check => aws_check(&config),
        },
        None => serve(config, &source, cli.config.clone()),
    }
}

/// The runtime for the CLI's one-shot commands.
fn runtime() -> tokio::runtime::Runtime {
    server_runtime(1)
}

/// The gateway's runtime: `worker_threads` (0 = one per CPU the process may run on). With one
/// thread, a single-threaded scheduler: every task runs on the thread that polls the sockets, with
/// no cross-thread hand-off, which costs about 15% less CPU per proxied request.
fn server_runtime(worker_threads: usize) -> tokio::runtime::Runtime {
    let threads = match worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .thread_name("cognito-gate")
        .build()
        .expect("tokio runtime")
}

fn serve(config: Config, source: &str, path: Option<PathBuf>) -> ExitCode {
    cognito_gate::logging::init(&config.log);
    tracing::info!(
        config = source,
        version = env!("CARGO_PKG_VERSION"),
        "starting"
    );
    server_runtime(config.server.worker_threads).block_on(async move {
        // Signal handlers first, so a signal that arrives during start-up is not lost.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let running = match cognito_gate::start(config).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("cognito-gate: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    reload(&running, path.as_ref()).await;
                    continue;
                }
            };
            tracing::info!(signal = name, "shutdown requested");
            break;
        }
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP: re-reads the configuration (and with it TLS certificates and a JWKS file). A bad
/// configuration is logged key by key and the running one stays in force.
async fn reload(running: &cognito_gate::RunningGateway, path: Option<&PathBuf>) {
    let config = match load(path) {
        Ok((c, _)) => c,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(problem = %e, "reload rejected: configuration invalid");
            }
            return;
        }
    };
    match running.reload(config).await {
        Ok(summary) => {
            tracing::info!(
                keys_rebuilt = summary.keys_rebuilt,
                exchange_rebuilt = summary.exchange_rebuilt,
                tls_reloaded = summary.tls_reloaded,
                "configuration reloaded"
            );
            if !summary.needs_restart.is_empty() {
                tracing::warn!(settings = ?summary.needs_restart,
                    "these settings changed but only take effect after a restart");
            }
        }
        Err(e) => tracing::error!(error = %e, "reload rejected; the running configuration stays"),
    }
}

fn verify_token(config: Config, route: Option<String>, token: String) -> ExitCode {
    cognito_gate::logging::init(&cognito_gate::config::LogConfig {
        level: "warn".into(),
        format: cognito_gate::config::LogFormat::Text,
    });
    let token = if token == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("cannot read the token from stdin: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        s.trim().to_string()
    } else {
        token
    };
    let Some(cognito) = config.cognito.clone() else {
        eprintln!("cognito: the configuration has no [cognito] section");
        return ExitCode::from(EXIT_CONFIG);
    };
    let route = match cognito_gate::explain::pick_route(&config, route.as_deref()) {
        Ok(r) => r.clone(),
        Err(e) => {
            eprintln!("--route: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The pool the token names (by its issuer), else the first: the explanation says which.
    let iss = cognito_gate::jwt::verify::token_from_header(token.as_bytes())
        .ok()
        .and_then(|t| cognito_gate::jwt::verify::decode(t).ok())
        .and_then(|d| {
            d.claims
                .get("iss")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
    let pool = iss
        .as_deref()
        .and_then(|i| cognito.pool_for_issuer(i))
        .unwrap_or(cognito.first())
        .clone();
    runtime().block_on(async move {
        let jwks = match cognito_gate::build_jwks(&pool.jwks, None) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        if let Some(cognito_gate::jwt::RefreshOutcome::Failed(e)) = jwks.refresh().await {
            eprintln!(
                "warning: JWKS fetch failed ({e}); using the keys from cognito.jwks.file if any"
            );
        }
        let verifier = cognito_gate::jwt::Verifier::new(
            pool.issuers.clone(),
            pool.app_clients.clone(),
            cognito.clock_skew,
            jwks,
        );
        let out = cognito_gate::explain::explain(&verifier, &pool.name, &route, &token).await;
        print!("{}", out.text);
        if out.allowed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_DENY)
        }
    })
}

fn aws_template(config: &Config, format: TemplateFormat) -> ExitCode {
    use cognito_gate::aws::template::{Format, Template};
    match Template::from_config(config) {
        Ok(t) => {
            print!(
                "{}",
                t.render(match format {
                    TemplateFormat::Yaml => Format::Yaml,
                    TemplateFormat::Json => Format::Json,
                })
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn read_password() -> std::io::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")
    } else {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
        Ok(s.trim_end_matches(['\r', '\n']).to_string())
    }
}

fn login(config: Config, username: &str) -> ExitCode {
    use cognito_gate::exchange::{AuthResult, CognitoErrorKind, ExchangeError, PrivateApi};
    cognito_gate::logging::init(&cognito_gate::config::LogConfig {
        level: "error".into(),
        format: cognito_gate::config::LogFormat::Text,
    });
    let (Some(api_cfg), Some(ex_cfg)) = (config.private_api.clone(), config.exchange.clone())
    else {
        eprintln!("private_api, exchange: login needs the [private_api] and [exchange] sections");
        return ExitCode::from(EXIT_CONFIG);
    };
    let password = match read_password() {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            eprintln!("no password given on stdin");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("cannot read the password: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let api = match PrivateApi::new(api_cfg, ex_cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("private_api: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    runtime().block_on(async move {
        match api.login(username, &password).await {
            Ok(result) => {
                let json =
                    serde_json::to_string_pretty(&result.to_cognito_json()).unwrap_or_default();
                println!("{json}");
                match result {
                    AuthResult::Tokens(_) => ExitCode::SUCCESS,
                    AuthResult::Challenge(c) => {
                        eprintln!("login: Cognito requires the {} challenge", c.name);
                        ExitCode::from(EXIT_CHALLENGE)
                    }
                }
            }
            Err(ExchangeError::Cognito {
                kind: CognitoErrorKind::NotAuthorized | CognitoErrorKind::UserNotFound,
                type_name,
            }) => {
                eprintln!("login failed: incorrect username or password ({type_name})");
                ExitCode::from(EXIT_DENY)
            }
            Err(ExchangeError::Cognito { type_name, .. }) => {
                eprintln!("login failed: Cognito answered {type_name}");
                ExitCode::from(EXIT_DENY)
            }
            Err(e) => {
                eprintln!("login failed: {e}");
                ExitCode::from(EXIT_UNAVAILABLE)
            }
        }
    })
}

fn aws_check(config: &Config) -> ExitCode {
    // The checklist says what failed and why; log lines would only repeat it.
    cognito_gate::logging::init(&cognito_gate::config::LogConfig {
        level: "off".into(),
        format: cognito_gate::config::LogFormat::Text,
    });
    let report = runtime().block_on(cognito_gate::aws::check::run(config));
    print!("{}", report.render());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}
