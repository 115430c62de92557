//! `cognito-gate login`: a password login through the private API, from the command line.

use std::process::ExitCode;

use super::{exit, runtime};
use crate::config::Config;

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

pub fn login(config: Config, username: &str) -> ExitCode {
    use crate::exchange::{AuthResult, CognitoErrorKind, ExchangeError, PrivateApi};
    crate::observe::init_logs(&crate::config::LogConfig {
        level: "error".into(),
        format: crate::config::LogFormat::Text,
    });
    let (Some(api_cfg), Some(ex_cfg)) = (config.private_api.clone(), config.exchange.clone())
    else {
        eprintln!("private_api, exchange: login needs the [private_api] and [exchange] sections");
        return ExitCode::from(exit::CONFIG);
    };
    let password = match read_password() {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            eprintln!("no password given on stdin");
            return ExitCode::from(exit::CONFIG);
        }
        Err(e) => {
            eprintln!("cannot read the password: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let api = match PrivateApi::new(api_cfg, ex_cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("private_api: {e}");
            return ExitCode::from(exit::CONFIG);
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
                        ExitCode::from(exit::CHALLENGE)
                    }
                }
            }
            Err(ExchangeError::Cognito {
                kind: CognitoErrorKind::NotAuthorized | CognitoErrorKind::UserNotFound,
                type_name,
            }) => {
                eprintln!("login failed: incorrect username or password ({type_name})");
                ExitCode::from(exit::DENY)
            }
            Err(ExchangeError::Cognito { type_name, .. }) => {
                eprintln!("login failed: Cognito answered {type_name}");
                ExitCode::from(exit::DENY)
            }
            Err(e) => {
                eprintln!("login failed: {e}");
                ExitCode::from(exit::UNAVAILABLE)
            }
        }
    })
}
