//! `cognito-gate aws template` and `aws check`.

use std::process::ExitCode;

use super::{exit, runtime};
use crate::aws::template::Format;
use crate::config::Config;

pub fn aws_template(config: &Config, format: Format) -> ExitCode {
    use crate::aws::template::Template;
    match Template::from_config(config) {
        Ok(t) => {
            print!("{}", t.render(format));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            ExitCode::from(exit::CONFIG)
        }
    }
}

pub fn aws_check(config: &Config) -> ExitCode {
    // The checklist says what failed and why; log lines would only repeat it.
    crate::observe::init_logs(&crate::config::LogConfig {
        level: "off".into(),
        format: crate::config::LogFormat::Text,
    });
    let report = runtime().block_on(crate::aws::check::run(config));
    print!("{}", report.render());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::CONFIG)
    }
}
