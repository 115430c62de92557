//! The checklist `aws check` prints: one line per item, passed, failed with what to fix, or
//! skipped.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// Not checked, because something it depends on failed or is not configured.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub status: Status,
    pub item: String,
    pub detail: String,
    /// What to do about a failure.
    pub fix: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    pub(super) fn pass(&mut self, item: impl Into<String>, detail: impl Into<String>) {
        self.push(Status::Pass, item, detail, None);
    }

    pub(super) fn fail(
        &mut self,
        item: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(Status::Fail, item, detail, Some(fix.into()));
    }

    pub(super) fn skip(&mut self, item: impl Into<String>, detail: impl Into<String>) {
        self.push(Status::Skip, item, detail, None);
    }

    fn push(
        &mut self,
        status: Status,
        item: impl Into<String>,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.lines.push(Line {
            status,
            item: item.into(),
            detail: detail.into(),
            fix,
        });
    }

    /// No line failed.
    pub fn passed(&self) -> bool {
        self.lines.iter().all(|l| l.status != Status::Fail)
    }

    pub fn line(&self, item: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.item == item)
    }

    /// `PASS  item: detail`, with `fix:` under a failure.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            let tag = match l.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
            };
            let _ = writeln!(out, "{tag}  {}: {}", l.item, l.detail);
            if let Some(fix) = &l.fix {
                let _ = writeln!(out, "      fix: {fix}");
            }
        }
        let failed = self
            .lines
            .iter()
            .filter(|l| l.status == Status::Fail)
            .count();
        let _ = match failed {
            0 => writeln!(out, "all checks passed"),
            n => writeln!(out, "{n} check(s) failed"),
        };
        out
    }
}
