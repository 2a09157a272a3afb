//! `rborg completions SHELL` and `rborg man`: shell completions (clap_complete) and a roff man
//! page (clap_mangen) generated from the very clap definitions the binary parses with, so
//! help, completions and man page cannot drift apart.

use std::io::Write;

use clap::CommandFactory;

use crate::borg::BorgCli;
use crate::orchestrator::arguments::OneAction;

/// The shells `rborg completions` writes scripts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// The whole `rborg` command line as one clap tree: the orchestrator's global flags and
/// actions (`OneAction`) plus rborg's own commands of the top-level `Cli` (`borg`,
/// `benchmark`, `config`, `completions`, `man`), where `borg` (which `Cli` takes as raw
/// arguments) is the borg 1.2 command line `BorgCli` with all its commands and options.
pub fn command() -> clap::Command {
    // `rborg borg ...` is the borg command line (main.rs dispatches it before the
    // orchestrator), so the orchestrator's own `borg` action is only reachable as `borgmatic
    // borg` and is replaced here by `BorgCli`
    let borg = BorgCli::command()
        .name("borg")
        .bin_name("rborg borg")
        .about(
            "Run the borg 1.2 compatible command line (`rborg borg init ...` is `borg init ...`).",
        );
    // the orchestrator's global flags stay on the top level: propagated into rborg's own
    // commands they would clash with `config validate --config`
    let mut cmd = OneAction::command()
        .name("rborg")
        .bin_name("rborg")
        .mut_args(|a| a.global(false))
        .mut_subcommand("borg", |_| borg);
    for sub in crate::Cli::command().get_subcommands() {
        if cmd.find_subcommand(sub.get_name()).is_none() {
            cmd = cmd.subcommand(sub.clone());
        }
    }
    cmd
}

/// Writes the completion script for `shell`. The script is generated into memory first:
/// clap_complete panics on write errors, and a closed pipe (`| head`) must not panic.
pub fn completions(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), "rborg", &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Writes the man page `rborg(1)`: the top-level page, then a section for every action and
/// command at every level (`rborg borg create`, `rborg config validate`...) with its options.
pub fn man(out: &mut dyn Write) -> std::io::Result<()> {
    let cmd = command();
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    man_sections(&cmd, "rborg", out)
}

fn man_sections(cmd: &clap::Command, prefix: &str, out: &mut dyn Write) -> std::io::Result<()> {
    for sub in cmd.get_subcommands() {
        let name = format!("{prefix} {}", sub.get_name());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        if let Some(about) = sub.get_about() {
            writeln!(out, "{}", roff_text(&about.to_string()))?;
        }
        let page = clap_mangen::Man::new(sub.clone());
        page.render_options_section(out)?;
        if sub.has_subcommands() {
            page.render_subcommands_section(out)?;
        }
        man_sections(sub, &name, out)?;
    }
    Ok(())
}

/// Text safe as a roff line: a leading `.` or `'` would be read as a request.
fn roff_text(text: &str) -> String {
    let text = text.replace('\\', "\\e");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

/// The exit code of `rborg completions` / `rborg man`: a reader that went away early (`| head`)
/// is not an error worth a message.
pub fn exit_with(result: std::io::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rborg: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible subcommand (as its path of names) and long flag of the tree, with the
    /// nesting depth of the command that has the flag (0 for `rborg`).
    fn walk(
        cmd: &clap::Command,
        path: &str,
        subs: &mut Vec<String>,
        flags: &mut Vec<(String, usize)>,
    ) {
        let depth = path.matches(' ').count();
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = a.get_long() {
                flags.push((long.to_string(), depth));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{path} {}", sub.get_name());
            subs.push(name.clone());
            walk(sub, &name, subs, flags);
        }
    }

    fn generated(shell: Shell) -> String {
        let mut out = Vec::new();
        completions(shell, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_command_and_flag_is_in_the_completions_and_the_man_page() {
        let (mut subs, mut flags) = (Vec::new(), Vec::new());
        walk(&command(), "rborg", &mut subs, &mut flags);
        flags.sort();
        flags.dedup_by(|a, b| a.0 == b.0);
        // the three command lines are all there
        for must in [
            "rborg create",
            "rborg borg create",
            "rborg borg key export",
            "rborg config validate",
            "rborg benchmark chunker",
            "rborg completions",
            "rborg man",
        ] {
            assert!(
                subs.iter().any(|s| s == must),
                "{must} missing from the tree"
            );
        }
        assert!(
            subs.len() > 60 && flags.len() > 100,
            "{} {}",
            subs.len(),
            flags.len()
        );
        let bash = generated(Shell::Bash);
        let zsh = generated(Shell::Zsh);
        let fish = generated(Shell::Fish);
        let mut man = Vec::new();
        super::man(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        for (flag, depth) in &flags {
            assert!(bash.contains(&format!("--{flag}")), "bash lacks --{flag}");
            assert!(zsh.contains(&format!("--{flag}")), "zsh lacks --{flag}");
            // clap_complete's fish script has the options of two levels of subcommands only
            // (`rborg borg create`), not those of `rborg borg debug dump-repo-objs`
            assert!(
                *depth > 2 || fish.contains(&format!("-l {flag}")),
                "fish lacks --{flag}"
            );
            let roff = format!("\\-\\-{}", flag.replace('-', "\\-"));
            assert!(man.contains(&roff), "man page lacks --{flag}");
        }
        for path in &subs {
            let name = path.rsplit(' ').next().unwrap();
            assert!(
                fish.contains(&format!("-a \"{name}\"")),
                "fish lacks {path}"
            );
            assert!(
                zsh.contains(&format!("'{name}:")) || zsh.contains(&format!("({name})")),
                "zsh lacks {path}"
            );
            assert!(bash.contains(&format!("{name})")), "bash lacks {path}");
            if !path.ends_with(" help") && !path.contains(" help ") {
                assert!(
                    man.contains(&format!(".SH \"{}\"", path.to_uppercase())),
                    "man page lacks {path}"
                );
            }
        }
    }
}
