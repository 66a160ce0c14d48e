//! Man pages and shell completions generated from the binaries' own clap
//! definitions, for the Debian packages (`scripts/package`).
//!
//! A crate of its own so that the PAM helper can use it without the
//! library. Every binary calls [`generate_if_asked`] first thing in `main`: with
//! `FACEGATE_GENERATE_DOCS=DIR` in its environment it writes its pages and
//! completions under DIR and exits instead of running (the same shape as
//! clap_complete's `COMPLETE=bash`). Nothing else reads the variable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// The environment variable naming the output folder.
pub const ENV: &str = "FACEGATE_GENERATE_DOCS";

#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DocsError + '_ {
    move |source| DocsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where each shell looks for a completion file of `bin`, relative to
/// `/usr/share` (Debian's locations).
pub fn completion_path(shell: Shell, bin: &str) -> Option<PathBuf> {
    match shell {
        Shell::Bash => Some(PathBuf::from(format!("bash-completion/completions/{bin}"))),
        Shell::Zsh => Some(PathBuf::from(format!("zsh/vendor-completions/_{bin}"))),
        Shell::Fish => Some(PathBuf::from(format!(
            "fish/vendor_completions.d/{bin}.fish"
        ))),
        _ => None,
    }
}

/// Writes `dir/man/man1/<name>.1` (and one page per visible subcommand,
/// `<name>-<sub>.1`) and the bash, zsh and fish completions under `dir`
/// at their `/usr/share` paths ([`completion_path`]). Returns the files.
pub fn write(cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, DocsError> {
    let name = cmd.get_name().to_string();
    let man = dir.join("man/man1");
    std::fs::create_dir_all(&man).map_err(io(&man))?;
    clap_mangen::generate_to(cmd.clone(), &man).map_err(io(&man))?;
    // The pages clap_mangen wrote: the command and every visible subcommand.
    let mut built = cmd.clone().disable_help_subcommand(true);
    built.build();
    let mut written = Vec::new();
    pages(&built, &man, &mut written);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let Some(rel) = completion_path(shell, &name) else {
            continue;
        };
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut buf);
        std::fs::write(&path, buf).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

fn pages(cmd: &clap::Command, man: &Path, out: &mut Vec<PathBuf>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, man, out);
    }
    let title = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    out.push(man.join(format!("{title}.1")));
}

/// When `$FACEGATE_GENERATE_DOCS` names a folder, writes the docs of `C`
/// there and returns the exit code to leave with; otherwise `None`.
pub fn generate_if_asked<C: CommandFactory>() -> Option<ExitCode> {
    let dir = std::env::var_os(ENV)?;
    let cmd = C::command();
    let name = cmd.get_name().to_string();
    Some(match write(cmd, Path::new(&dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: generating docs: {e}");
            ExitCode::from(1)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)] // only its clap definition is used
    #[derive(clap::Parser)]
    #[command(name = "demo", version = "1.0")]
    struct Demo {
        /// Say it loudly.
        #[arg(long)]
        loud: bool,
        #[command(subcommand)]
        cmd: Sub,
    }

    #[allow(dead_code)]
    #[derive(clap::Subcommand)]
    enum Sub {
        /// Greet someone.
        Greet { name: String },
        #[command(hide = true)]
        Secret,
    }

    #[test]
    fn writes_pages_and_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(Demo::command(), dir.path()).unwrap();
        let man = std::fs::read_to_string(dir.path().join("man/man1/demo.1")).unwrap();
        assert!(man.contains("loudly"), "{man}");
        assert!(dir.path().join("man/man1/demo-greet.1").exists());
        assert!(!dir.path().join("man/man1/demo-secret.1").exists());
        let bash = dir.path().join("bash-completion/completions/demo");
        assert!(std::fs::read_to_string(&bash).unwrap().contains("greet"));
        assert!(dir.path().join("zsh/vendor-completions/_demo").exists());
        assert!(dir
            .path()
            .join("fish/vendor_completions.d/demo.fish")
            .exists());
        assert_eq!(files.len(), 2 + 3, "{files:?}");
        for f in &files {
            assert!(f.exists(), "{} listed but not written", f.display());
        }
    }
}
