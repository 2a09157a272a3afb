//! Where the key's passphrase comes from, without a terminal.

use rborg_archive::keys::PassphraseProvider;
use rborg_crypto::Passphrase;

/// Where [`crate::Repository::open`] gets the passphrase of an encrypted repository. Nothing
/// ever prompts: when the source gives no passphrase, opening fails with
/// [`crate::Error::Archive`] (borg's `NoPassphrase`). The empty passphrase is always tried
/// first, as borg does.
#[derive(Clone)]
pub enum PassphraseSource {
    /// This passphrase.
    Value(String),
    /// borg's environment variables: `BORG_PASSPHRASE`, `BORG_PASSCOMMAND`,
    /// `BORG_PASSPHRASE_FD` (borg's `Passphrase.env_passphrase`).
    Env,
    /// The first line of this command's output, split like a shell would (borg's
    /// `BORG_PASSCOMMAND`).
    Command(String),
}

impl std::fmt::Debug for PassphraseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassphraseSource::Value(_) => f.write_str("Value(<hidden>)"),
            PassphraseSource::Env => f.write_str("Env"),
            PassphraseSource::Command(c) => f.debug_tuple("Command").field(c).finish(),
        }
    }
}

impl PassphraseProvider for PassphraseSource {
    fn environment_passphrase(&mut self) -> rborg_archive::Result<Option<Passphrase>> {
        Ok(match self {
            PassphraseSource::Value(v) => Some(Passphrase::new(v.clone())),
            PassphraseSource::Env => Passphrase::from_env()?,
            PassphraseSource::Command(cmd) => {
                let cmd = cmd.clone();
                Passphrase::from_env_with(&|k| (k == "BORG_PASSCOMMAND").then(|| cmd.clone()))?
            }
        })
    }

    fn ask(&mut self, _prompt: &str) -> rborg_archive::Result<Passphrase> {
        Err(rborg_crypto::Error::NoPassphrase(format!(
            "no passphrase from {self:?} and no terminal to ask"
        ))
        .into())
    }

    fn new_passphrase(&mut self) -> rborg_archive::Result<Passphrase> {
        self.environment_passphrase()?
            .ok_or_else(|| rborg_crypto::Error::NoPassphrase("no new passphrase".into()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(mut source: PassphraseSource) -> Option<String> {
        source
            .environment_passphrase()
            .unwrap()
            .map(|p| p.as_str().to_string())
    }

    #[test]
    fn sources_give_their_passphrase_and_never_ask() {
        assert_eq!(
            resolve(PassphraseSource::Value("s3cret".into())).as_deref(),
            Some("s3cret")
        );
        // like BORG_PASSCOMMAND: trailing newlines are stripped, quotes are shell quotes
        assert_eq!(
            resolve(PassphraseSource::Command("printf 'two words\\n'".into())).as_deref(),
            Some("two words")
        );
        let mut failing = PassphraseSource::Command("false".into());
        assert!(failing.environment_passphrase().is_err());
        assert!(PassphraseSource::Env.ask("Enter passphrase: ").is_err());
        let shown = format!("{:?}", PassphraseSource::Value("s3cret".into()));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
