//! `tandem verify -N NAME [--repair]` (or with `-d`/`-r` as a run): the roots come from
//! the session's baseline when not given, and the run's options (`-i`, `-P`, `-l`, keep
//! directories, `-q`, `--format json`) apply as to a sync.

use super::*;
use crate::state::baseline::Baseline;
use crate::sync::verify::{verify, VerifyOptions};

/// Where the word `verify` is taken as the command: first, before the options.
pub(super) fn rewrite(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_some_and(|a| a == "verify") {
        args[1] = "--verify".into();
    }
    args
}

/// Runs `tandem verify`; returns the exit status.
pub(super) fn main(args: &Args, reporter: &mut dyn Reporter, bars: Option<Bars>) -> u8 {
    let job = match verify_job(args) {
        Ok(j) => j,
        Err(e) => {
            let message = format!("{e} (see 'tandem --help')");
            return fail(reporter, &message, e.exit_bit());
        }
    };
    let opts = VerifyOptions {
        repair: args.repair,
        problems_only: false,
    };
    match bars {
        Some(mut bars) => verify(&job, opts, reporter, &mut bars).0,
        None => verify(&job, opts, reporter, &mut crate::sync::transfer::NoWatch).0,
    }
}

/// The job verify runs: the session's roots unless given, any direction (verify has
/// none), and both sides behind everything else on their hosts.
fn verify_job(args: &Args) -> Result<Job> {
    let mut args = args.clone();
    if args.continuous || args.dry_run {
        return Err(Error::Usage(
            "tandem verify runs once and reads only: -C and -n do not apply".into(),
        ));
    }
    if args.dir.is_none() && args.remote.is_none() && args.host.is_none() {
        let name = args.name.clone().ok_or_else(|| {
            Error::Usage("tandem verify needs -N NAME (or -d and -r as for the sync)".into())
        })?;
        let session = Session::new(name.clone())?;
        let base = Baseline::load(&session.baseline_path())?.ok_or_else(|| {
            Error::State(format!(
                "no session '{name}' (see 'tandem sessions'): verify checks what a sync agreed on; run a sync first"
            ))
        })?;
        args.dir = Some(PathBuf::from(base.local_root));
        args.remote = Some(base.remote_root);
    }
    args.direction = args.direction.or(Some(args::DirectionArg::Bidi));
    let (mut job, _notes) = job(&args)?;
    job.background = true;
    Ok(job)
}
