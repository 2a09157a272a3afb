//! `borg help [TOPIC]`: help on a command or on one of borg's help topics (borg 1.2.4
//! `archiver.py` `do_help` and `helptext`).

use clap::{Args, CommandFactory};

use super::common::{CmdError, CmdResult, EXIT_SUCCESS};

#[derive(Debug, Args)]
pub struct HelpArgs {
    /// additional help on TOPIC
    #[arg(value_name = "TOPIC")]
    topic: Option<String>,
    /// print only the epilog of a command's help
    #[arg(long = "epilog-only")]
    epilog_only: bool,
    /// print only the usage of a command
    #[arg(long = "usage-only")]
    usage_only: bool,
}

/// The help topics that are not commands (borg's `helptext`), in rborg's words.
const TOPICS: [(&str, &str); 3] = [
    (
        "patterns",
        "Exclusion patterns and pattern files (borg help patterns)

Paths are matched without their leading slash. A pattern may start with a style prefix:

  fm:  Fnmatch (default for --exclude): '*' matches any characters including '/';
       a pattern matches the path and everything below it.
  sh:  Shell-style (default for --pattern and --patterns-from): '*' and '?' do not
       match '/', '**/' matches any number of directory levels.
  re:  Regular expression, searched anywhere in the path.
  pp:  Path prefix: the path and everything below it.
  pf:  Path full-match: exactly this path.

--exclude PATTERN and --exclude-from FILE add exclude patterns; excluded directories are
not descended into. --pattern and --patterns-from FILE take one command per line:

  + PATTERN   include matching paths
  - PATTERN   exclude matching paths (excluded directories are still searched)
  ! PATTERN   exclude matching paths and do not descend into them
  R PATH      a root path to back up (borg create)
  P STYLE     the default style for the following patterns of the file

The first pattern that matches a path decides; empty lines and lines starting with '#'
are ignored.
",
    ),
    (
        "placeholders",
        "Placeholders in archive names, comments and some options (borg help placeholders)

  {hostname} {fqdn} {reverse-fqdn} {now} {now:FORMAT} {utcnow} {utcnow:FORMAT} {user}
  {pid} {uuid4} {borgversion} {borgmajor} {borgminor} {borgpatch}

Use {{ and }} for literal braces.
",
    ),
    (
        "compression",
        "Compression (borg help compression)

  none, lz4 (default), zstd[,L] (L 1..22, default 3), zlib[,L] (0..9, default 6),
  lzma[,L] (0..9, default 6), auto,C[,L] (compress only if lz4 finds the data compressible),
  obfuscate,SPEC,C[,L] (pad compressed chunks to hide their size)
",
    ),
];

pub fn run(args: HelpArgs) -> CmdResult {
    let mut borg = super::BorgCli::command();
    let Some(topic) = args.topic else {
        println!("{}", borg.render_help());
        return Ok(EXIT_SUCCESS);
    };
    if let Some((_, text)) = TOPICS.iter().find(|(name, _)| *name == topic) {
        print!("{text}");
        return Ok(EXIT_SUCCESS);
    }
    borg.build();
    let Some(cmd) = borg.find_subcommand_mut(&topic) else {
        return Err(CmdError::new(format!("No help available on {topic}")));
    };
    if args.usage_only {
        println!("{}", cmd.render_usage());
    } else if args.epilog_only {
        let text = cmd
            .get_long_about()
            .or_else(|| cmd.get_about())
            .map(|t| t.to_string())
            .unwrap_or_default();
        println!("{text}");
    } else {
        println!("{}", cmd.render_long_help());
    }
    Ok(EXIT_SUCCESS)
}
