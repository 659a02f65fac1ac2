//! Opening the two sides: the local endpoint, and the other one — a local directory through
//! a pipe or a thread, or a host over SSH — with owners mapped by name between them.

use super::*;

/// Both sides, open.
pub(super) struct Opened {
    pub(super) local: Box<dyn Endpoint>,
    pub(super) remote: Box<dyn Endpoint>,
    /// For the user: a host key learned, an agent installed.
    pub(super) notes: Vec<String>,
}

pub(super) fn open_endpoints(job: &Job) -> Result<Opened> {
    let local = LocalEndpoint::open(
        &job.local_dir,
        format!("local '{}'", job.local_dir.display()),
        job.preserve_owner,
    )?
    .with_hard_links(job.hard_links)
    .with_scan_threads(job.scan_threads)
    .with_acls(job.acls[0])
    .with_keep_dir(job.keep_dirs[0].as_deref())?;
    let agent = |root: PathBuf| AgentOptions {
        root,
        label: format!("remote '{}'", job.remote.display()),
        owner: job.preserve_owner,
        compression: job.compression,
        hard_links: job.hard_links,
        acls: job.acls[1],
        scan_threads: job.scan_threads,
        rate: job.rate,
        keep_dir: job.keep_dirs[1].clone(),
        log: job.remote_log.clone(),
        background: job.background,
    };
    let mut notes = Vec::new();
    let remote: Box<dyn Endpoint> = match &job.remote {
        RemoteSpec::Local(dir) => {
            let opts = agent(dir.clone());
            match &job.transport {
                LocalTransport::InProcess => Box::new(
                    LocalEndpoint::open(dir, opts.label, job.preserve_owner)?
                        .with_hard_links(job.hard_links)
                        .with_scan_threads(job.scan_threads)
                        .with_acls(job.acls[1])
                        .with_keep_dir(job.keep_dirs[1].as_deref())?,
                ),
                LocalTransport::Pipe { agent } => {
                    let agent = crate::transport::pipe::find_agent(agent.as_deref())?;
                    Box::new(crate::transport::pipe::connect(&agent, &opts)?)
                }
                LocalTransport::Thread => Box::new(agent_thread(opts, job.compression)?),
            }
        }
        RemoteSpec::Ssh {
            user,
            host,
            port,
            path,
        } => {
            let dest = crate::transport::ssh::Hop {
                user: user.clone(),
                host: host.clone(),
                port: *port,
            };
            let (ep, n) = connect_ssh(&dest, job, &agent(PathBuf::from(path)))?;
            notes = n;
            Box::new(ep)
        }
    };
    Ok(Opened {
        local: Box::new(local),
        remote,
        notes,
    })
}

#[cfg(feature = "ssh")]
pub(super) fn connect_ssh(
    dest: &crate::transport::ssh::Hop,
    job: &Job,
    agent: &AgentOptions,
) -> Result<(RemoteEndpoint, Vec<String>)> {
    crate::transport::ssh::connect(dest, &job.ssh, agent)
}

#[cfg(not(feature = "ssh"))]
pub(super) fn connect_ssh(
    dest: &crate::transport::ssh::Hop,
    _job: &Job,
    _agent: &AgentOptions,
) -> Result<(RemoteEndpoint, Vec<String>)> {
    Err(Error::Unreachable(format!(
        "cannot reach '{}': this build of tandem has no SSH transport",
        dest.host
    )))
}

/// Serves an agent in a thread over a socket pair: the protocol without a process.
pub fn agent_thread(opts: AgentOptions, compression: Compression) -> Result<RemoteEndpoint> {
    let label = opts.label.clone();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| Error::Unreachable(format!("socketpair: {e}")))?;
    let theirs_w = theirs
        .try_clone()
        .map_err(|e| Error::Unreachable(format!("socketpair: {e}")))?;
    std::thread::spawn(move || {
        let _ = agent::serve(theirs, theirs_w, &opts);
    });
    let ours_w = ours
        .try_clone()
        .map_err(|e| Error::Unreachable(format!("socketpair: {e}")))?;
    RemoteEndpoint::new(ours, HalfClose(ours_w), label, compression.into(), None)
}

/// The writing half of a socket: closing it must tell the peer "no more input" even while
/// the reading half stays open (a pipe gets that for free; a socket needs `shutdown`).
pub(super) struct HalfClose(std::os::unix::net::UnixStream);

impl std::io::Write for HalfClose {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for HalfClose {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }
}

/// Two roots that are one directory, or one inside the other, would sync a tree into
/// itself (nesting it deeper on every run): refused before anything is written.
pub(super) fn roots_apart(local: &Path, remote: &RemoteSpec) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let RemoteSpec::Local(remote) = remote else {
        return Ok(());
    };
    let (Ok(a), Ok(b)) = (std::fs::canonicalize(local), std::fs::canonicalize(remote)) else {
        return Ok(()); // a missing root is reported when it is opened
    };
    let same_inode = match (std::fs::metadata(&a), std::fs::metadata(&b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    };
    let why = if a == b || same_inode {
        "are the same directory"
    } else if b.starts_with(&a) {
        "are nested: the -r directory is inside the -d directory"
    } else if a.starts_with(&b) {
        "are nested: the -d directory is inside the -r directory"
    } else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "the roots '{}' and '{}' {why}; give two separate directories",
        local.display(),
        remote.display()
    )))
}

/// Owners by name (as root, without `--numeric-ids`): the far tree is renumbered as here,
/// and the far endpoint wrapped to renumber what goes back.
pub(super) fn map_owners(
    job: &Job,
    remote: Box<dyn Endpoint>,
    [near, far]: [Option<Database>; 2],
    local_tree: &Tree,
    remote_tree: &mut Tree,
) -> Result<Box<dyn Endpoint>> {
    use crate::disk::owners::IdMap;
    if !job.preserve_owner || job.numeric_ids {
        return Ok(remote);
    }
    let near = near.unwrap_or_else(Database::load);
    let far = far.ok_or_else(|| {
        Error::Protocol(format!(
            "{} sent no user names to map owners by",
            remote.place()
        ))
    })?;
    let query = IdMap::query(&near, local_tree, remote_tree);
    let map = IdMap::build(&near, &query, &far.answer(&query));
    if map.is_identity() {
        return Ok(remote);
    }
    for e in remote_tree.entries.values_mut() {
        map.inward(e);
    }
    Ok(Box::new(crate::endpoint::mapped::OwnerMapped {
        inner: remote,
        map,
    }))
}
