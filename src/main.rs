//! The command line: parse the arguments, load the configuration, dispatch to `cli`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cognito_gate::aws::template::Format;
use cognito_gate::cli::{self, exit};

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
    /// Exit code 0 = allow, 2 = deny, 1 = error, 64 = bad arguments.
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
    /// The forward proxy's issuing CA ([forward_proxy] intercept).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Write a new CA: DIR/ca.pem (for the apps' trust stores) and DIR/ca.key (mode 0600).
    /// Never overwrites. Exit code 0, or 1 when it cannot write.
    Init {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the configured CA certificate (PEM) on stdout, for trust stores.
    Export,
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

fn main() -> ExitCode {
    let args = match Cli::try_parse() {
        Ok(a) => a,
        // --help and --version print and succeed; a usage error is EX_USAGE, not clap's 2,
        // which would read as "denied" to a script around verify-token or login.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(exit::USAGE);
        }
    };
    // A new CA needs no configuration (it is what the configuration will name).
    if let Some(Command::Ca {
        command: CaCommand::Init { out },
    }) = &args.command
    {
        return cli::ca_init(out);
    }
    let (config, source) = match cli::load(args.config.as_ref()) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            return ExitCode::from(exit::CONFIG);
        }
    };
    match args.command {
        Some(Command::CheckConfig) => {
            println!("{source}: OK");
            print!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Some(Command::VerifyToken { route, token }) => cli::verify_token(config, route, token),
        Some(Command::Login { username }) => cli::login(config, &username),
        Some(Command::Ca { command }) => match command {
            CaCommand::Init { out } => cli::ca_init(&out),
            CaCommand::Export => cli::ca_export(&config),
        },
        Some(Command::Aws { command }) => match command {
            AwsCommand::Template { format } => cli::aws_template(
                &config,
                match format {
                    TemplateFormat::Yaml => Format::Yaml,
                    TemplateFormat::Json => Format::Json,
                },
            ),
            AwsCommand::Check => cli::aws_check(&config),
        },
        None => cli::serve(config, &source, args.config.clone()),
    }
}
