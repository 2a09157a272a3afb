//! What the comparison tests share (rborg and the real borg 1.2.4 run on the same input).

use std::path::Path;
use std::process::{Command, Output};

use rborg_testkit::{borg_command, BORG};

/// Which borg command line a comparison runs: the real borg 1.2.4 or rborg's `borg` one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tool {
    Borg,
    Rborg,
}

/// Both, borg first.
pub const TOOLS: [Tool; 2] = [Tool::Borg, Tool::Rborg];

impl Tool {
    /// `borg args...` for this tool, with [`borg_command`]'s environment.
    pub fn command(self, args: &[&str], cwd: &Path, home: &Path, passphrase: &str) -> Command {
        match self {
            Tool::Borg => borg_command(BORG, args, cwd, home, passphrase),
            Tool::Rborg => {
                let mut full = vec!["borg"];
                full.extend_from_slice(args);
                borg_command(env!("CARGO_BIN_EXE_rborg"), &full, cwd, home, passphrase)
            }
        }
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
pub fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit code\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}
