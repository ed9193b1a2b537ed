//! The hermetic step runner.
//!
//! A step runs with a cleared environment (only what its recipe declares), umask 022, no network
//! and its whole world at fixed paths: the build's scratch directory is mounted at [`ROOT`] in a
//! private mount namespace, over an empty `/tmp`, in a new network and UTS namespace. Where
//! namespaces cannot be made, a step runs only when the caller accepts the leak
//! ([`Isolation::None`]), which the manifest then records.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod variation;

pub use variation::{Variation, Varied};

/// Where the scratch directory appears inside every step.
pub const ROOT: &str = "/tmp/kata-repro";

/// The hostname every step sees.
pub const HOSTNAME: &str = "kata-repro";

/// How a step is kept from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// New mount, network and UTS namespaces: no network, fixed paths, fixed hostname.
    Namespaces,
    /// None: the step could reach the network and sees real paths. Only with
    /// `--allow-network-leak`.
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "cannot isolate build steps: {reason}\n  steps need new mount, network and UTS \
         namespaces (unshare(2)); run as root or enable unprivileged user namespaces \
         (sysctl kernel.unprivileged_userns_clone=1), or pass --allow-network-leak to build \
         without isolation, which the manifest then records"
    )]
    NoIsolation { reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: io::Error },
}

/// A read-only directory (or file) from the host, shown at `ROOT/<inside>`.
#[derive(Debug, Clone)]
pub struct Bind {
    pub host: PathBuf,
    pub inside: String,
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct Step {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The working directory, as the step sees it.
    pub cwd: String,
    /// Where stdout and stderr go (both, interleaved).
    pub log: PathBuf,
}

#[derive(Debug)]
pub struct StepRun {
    pub status: ExitStatus,
    pub duration: Duration,
}

/// A scratch directory and the read-only inputs shown inside it.
#[derive(Debug)]
pub struct Sandbox {
    scratch: PathBuf,
    binds: Vec<Bind>,
    isolation: Isolation,
    overlay: Option<Overlay>,
    /// What a varied build changes (nothing by default).
    varied: Varied,
}

/// A read-only tree shown writable at `ROOT/<inside>`: an overlay whose writes land in
/// `<scratch>/<inside>.upper`, so the tree itself is never copied or changed.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub lower: PathBuf,
    pub inside: String,
}

impl Overlay {
    pub fn upper(&self, scratch: &Path) -> PathBuf {
        scratch.join(format!("{}.upper", self.inside))
    }
    fn work(&self, scratch: &Path) -> PathBuf {
        scratch.join(format!("{}.work", self.inside))
    }
}

impl Sandbox {
    /// A sandbox over `scratch` (a directory the caller owns), isolated as [`isolation`] found
    /// possible.
    pub fn new(scratch: &Path, isolation: Isolation) -> Self {
        Self {
            scratch: scratch.to_owned(),
            binds: Vec::new(),
            isolation,
            overlay: None,
            varied: Varied::default(),
        }
    }

    /// The same sandbox, with what `varied` changes for every step: the root, hostname, umask,
    /// user, personality and CPUs (the environment is the builder's).
    pub fn with_variations(mut self, varied: &Varied) -> Self {
        self.varied = varied.clone();
        self
    }

    /// Where the scratch directory appears inside steps (namespaces only).
    pub fn root(&self) -> &str {
        self.varied.root.as_deref().unwrap_or(ROOT)
    }

    /// Shows `lower` writable at `ROOT/<inside>` through an overlay (namespaces only). Returns
    /// false where no overlay can be made (no isolation, or a path the overlay's options
    /// cannot carry): the caller then copies the tree instead.
    pub fn add_overlay(&mut self, lower: &Path, inside: &str) -> Result<bool, SandboxError> {
        let text = lower.to_string_lossy();
        if self.isolation != Isolation::Namespaces || text.contains([',', ':', '\\']) {
            return Ok(false);
        }
        let o = Overlay {
            lower: lower.to_owned(),
            inside: inside.to_owned(),
        };
        for d in [
            o.upper(&self.scratch),
            o.work(&self.scratch),
            self.scratch.join(inside),
        ] {
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        self.overlay = Some(o);
        Ok(true)
    }

    /// The overlay, when the source is shown through one.
    pub fn overlay(&self) -> Option<&Overlay> {
        self.overlay.as_ref()
    }

    /// Shows more read-only host directories inside.
    pub fn add_binds(&mut self, binds: Vec<Bind>) -> Result<(), SandboxError> {
        let first = self.binds.len();
        self.binds.extend(binds);
        self.prepare(first)
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// The path a step sees for `ROOT/<rel>`.
    pub fn inside(&self, rel: &str) -> String {
        let root = match self.isolation {
            Isolation::Namespaces => PathBuf::from(self.root()),
            Isolation::None => self.scratch.clone(),
        };
        let p = if rel.is_empty() { root } else { root.join(rel) };
        p.to_string_lossy().into_owned()
    }

    /// The host path of `ROOT/<rel>` (for writable directories, which live in the scratch dir).
    pub fn host(&self, rel: &str) -> PathBuf {
        self.scratch.join(rel)
    }

    /// Mount points for binds (namespaces) or symlinks to them (no isolation).
    fn prepare(&self, first: usize) -> Result<(), SandboxError> {
        for b in &self.binds[first..] {
            let at = self.scratch.join(&b.inside);
            let parent = at.parent().expect("under the scratch dir");
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            match self.isolation {
                // A file is mounted over a file, a directory over a directory.
                Isolation::Namespaces if b.host.is_file() => {
                    std::fs::File::create(&at).map_err(io_err(&at))?;
                }
                Isolation::Namespaces => std::fs::create_dir_all(&at).map_err(io_err(&at))?,
                Isolation::None => {
                    if !at.exists() {
                        std::os::unix::fs::symlink(&b.host, &at).map_err(io_err(&at))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `step` to completion.
    pub fn run(&self, step: &Step) -> Result<StepRun, SandboxError> {
        let log = File::create(&step.log).map_err(io_err(&step.log))?;
        let log2 = log.try_clone().map_err(io_err(&step.log))?;
        let program = step.argv.first().cloned().unwrap_or_default();
        let mut cmd = Command::new(&program);
        cmd.args(&step.argv[1..])
            .env_clear()
            .envs(&step.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let setup = Setup::new(self, &step.cwd).map_err(|source| SandboxError::Spawn {
            program: program.clone(),
            source,
        })?;
        // SAFETY: `enter` only makes system calls on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || setup.enter());
        }
        let started = Instant::now();
        let status = cmd
            .status()
            .map_err(|source| SandboxError::Spawn { program, source })?;
        Ok(StepRun {
            status,
            duration: started.elapsed(),
        })
    }
}

/// The last `lines` lines of a log, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_owned(),
        source,
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// Everything the child needs, allocated before the fork: after it only system calls run.
struct Setup {
    isolate: bool,
    rootless: Option<(CString, CString)>,
    scratch: CString,
    /// (host, mount point, flags the host's filesystem locks: nosuid, nodev, noexec)
    binds: Vec<(CString, CString, libc::c_ulong)>,
    /// (mount point, options) of the source overlay.
    overlay: Option<(CString, CString)>,
    overlay_fs: CString,
    root: CString,
    /// Directories to make, outermost first, before the root (a varied root is deeper).
    root_parents: Vec<CString>,
    hostname: CString,
    domainname: Option<CString>,
    umask: libc::mode_t,
    personality: Option<libc::c_ulong>,
    cpus: Option<libc::cpu_set_t>,
    cwd: CString,
    empty: CString,
    tmp: CString,
    tmpfs: CString,
    slash: CString,
    setgroups: CString,
    uid_map: CString,
    gid_map: CString,
    deny: CString,
    /// Host directories hidden under an empty read-only tmpfs (sockets, other users' files).
    hidden: Vec<CString>,
    proc_fs: CString,
    proc_dir: CString,
    /// The process that runs the step (this one, before the fork): the step dies with it.
    parent: libc::pid_t,
}

impl Setup {
    fn new(sandbox: &Sandbox, cwd: &str) -> io::Result<Self> {
        let isolate = sandbox.isolation == Isolation::Namespaces;
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        // Steps run as uid and gid 0 whoever starts the build (in a user namespace when not
        // root), so that no caller's identity reaches them; a varied build runs them as
        // another user, always in a user namespace.
        let (inner_uid, inner_gid) = sandbox.varied.user.unwrap_or((0, 0));
        let rootless = (!uid.is_root() || sandbox.varied.user.is_some()).then(|| {
            (
                CString::new(format!("{inner_uid} {uid} 1")).expect("no NUL"),
                CString::new(format!("{inner_gid} {gid} 1")).expect("no NUL"),
            )
        });
        let root = Path::new(sandbox.root());
        let mut root_parents: Vec<CString> = root
            .ancestors()
            .skip(1)
            .take_while(|p| *p != Path::new("/tmp") && *p != Path::new("/"))
            .map(cstring)
            .collect::<io::Result<_>>()?;
        root_parents.reverse();
        let (hostname, domainname) = match &sandbox.varied.host {
            Some((h, d)) => (
                CString::new(h.as_str()).map_err(io::Error::other)?,
                Some(CString::new(d.as_str()).map_err(io::Error::other)?),
            ),
            None => (CString::new(HOSTNAME).expect("no NUL"), None),
        };
        let cpus = sandbox.varied.cpus.as_ref().map(|list| {
            // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_ZERO(&mut set);
                for &c in list {
                    libc::CPU_SET(c, &mut set);
                }
                set
            }
        });
        let binds = sandbox
            .binds
            .iter()
            .map(|b| {
                let host = cstring(&b.host)?;
                Ok((
                    host.clone(),
                    cstring(&sandbox.scratch.join(&b.inside))?,
                    locked_flags(&host)?,
                ))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let overlay = match &sandbox.overlay {
            Some(o) => {
                let options = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    o.lower.display(),
                    o.upper(&sandbox.scratch).display(),
                    o.work(&sandbox.scratch).display()
                );
                Some((
                    cstring(&sandbox.scratch.join(&o.inside))?,
                    CString::new(options).map_err(io::Error::other)?,
                ))
            }
            None => None,
        };
        Ok(Self {
            isolate,
            rootless,
            scratch: cstring(&sandbox.scratch)?,
            binds,
            overlay,
            overlay_fs: CString::new("overlay").expect("no NUL"),
            root: cstring(root)?,
            root_parents,
            hostname,
            domainname,
            umask: sandbox.varied.umask.unwrap_or(0o022) as libc::mode_t,
            personality: (sandbox.varied.personality != 0)
                .then_some(sandbox.varied.personality as libc::c_ulong),
            cpus,
            cwd: CString::new(cwd).map_err(io::Error::other)?,
            empty: CString::new("").expect("no NUL"),
            tmp: CString::new("/tmp").expect("no NUL"),
            tmpfs: CString::new("tmpfs").expect("no NUL"),
            slash: CString::new("/").expect("no NUL"),
            setgroups: CString::new("/proc/self/setgroups").expect("no NUL"),
            uid_map: CString::new("/proc/self/uid_map").expect("no NUL"),
            gid_map: CString::new("/proc/self/gid_map").expect("no NUL"),
            deny: CString::new("deny").expect("no NUL"),
            hidden: HIDDEN
                .iter()
                .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
                .map(|p| CString::new(*p).expect("no NUL"))
                .collect(),
            proc_fs: CString::new("proc").expect("no NUL"),
            proc_dir: CString::new("/proc").expect("no NUL"),
            // SAFETY: getpid cannot fail.
            parent: unsafe { libc::getpid() },
        })
    }

    /// In the child, between fork and exec.
    fn enter(&self) -> io::Result<()> {
        // SAFETY: plain system calls on NUL-terminated strings owned by `self`.
        unsafe {
            libc::umask(self.umask);
        }
        if let Some(set) = &self.cpus {
            check(unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set)
            })?;
        }
        if let Some(flags) = self.personality {
            // As setarch does; the flags hold across exec.
            check(unsafe { libc::personality(flags) })?;
        }
        if self.isolate {
            // Killed when kata-repro ends, however it ends; then its init below is killed too.
            die_with_parent()?;
            // SAFETY: getppid cannot fail.
            if unsafe { libc::getppid() } != self.parent {
                // SAFETY: the parent has gone already: nothing of the step may start.
                unsafe { libc::_exit(1) };
            }
            enter_namespaces(self.rootless.is_some())?;
            if let Some((uid_map, gid_map)) = &self.rootless {
                write_file(&self.setgroups, &self.deny)?;
                write_file(&self.uid_map, uid_map)?;
                write_file(&self.gid_map, gid_map)?;
            }
            let name = self.hostname.as_bytes();
            check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
            if let Some(d) = &self.domainname {
                let d = d.as_bytes();
                check(unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) })?;
            }
            // Nothing mounted here propagates back to the host.
            mount(
                None,
                &self.slash,
                None,
                libc::MS_REC | libc::MS_PRIVATE,
                None,
            )?;
            for (host, at, locked) in &self.binds {
                mount(Some(host), at, None, libc::MS_BIND | libc::MS_REC, None)?;
                mount(
                    None,
                    at,
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
                    None,
                )?;
            }
            if let Some((at, options)) = &self.overlay {
                mount(
                    Some(&self.overlay_fs),
                    at,
                    Some(&self.overlay_fs),
                    0,
                    Some(options),
                )?;
            }
            // Detach a copy of the scratch tree, hide the host's /tmp, and attach the copy at ROOT.
            let tree = check(unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    self.scratch.as_ptr(),
                    (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
                        | libc::AT_RECURSIVE as libc::c_uint,
                ) as libc::c_int
            })?;
            // Everything else of the host is read-only to the step: it can write only under ROOT.
            let attr = MountAttr {
                attr_set: MOUNT_ATTR_RDONLY,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            check(unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    self.slash.as_ptr(),
                    libc::AT_RECURSIVE as libc::c_uint,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                ) as libc::c_int
            })?;
            mount(Some(&self.tmpfs), &self.tmp, Some(&self.tmpfs), 0, None)?;
            for dir in &self.hidden {
                mount(
                    Some(&self.tmpfs),
                    dir,
                    Some(&self.tmpfs),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    None,
                )?;
            }
            for p in &self.root_parents {
                check(unsafe { libc::mkdir(p.as_ptr(), 0o755) })?;
            }
            check(unsafe { libc::mkdir(self.root.as_ptr(), 0o755) })?;
            check(unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    tree,
                    self.empty.as_ptr(),
                    libc::AT_FDCWD,
                    self.root.as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH,
                ) as libc::c_int
            })?;
            unsafe { libc::close(tree) };
            self.init()?;
            drop_privileges()?;
        }
        check(unsafe { libc::chdir(self.cwd.as_ptr()) })?;
        Ok(())
    }

    /// The step's PID namespace was made by `unshare`: its first child is its init. This
    /// process waits for that init and exits with the step's status; the init mounts the
    /// namespace's own /proc, forks the step (which returns from here to exec) and reaps every
    /// process of the namespace until none is left. When the init exits, the kernel kills
    /// whatever the step left behind; the init is killed when this process ends, and this one
    /// when kata-repro ends, so no step outlives the build that ran it.
    fn init(&self) -> io::Result<()> {
        // SAFETY: fork, waitpid, mount and _exit are async-signal-safe; no allocation follows.
        unsafe {
            // Open while this process lives: the init sees it closed if this process is killed
            // before the init could ask to die with it.
            let mut alive = [0; 2];
            check(libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC))?;
            let init = check(libc::fork())?;
            if init > 0 {
                libc::close(alive[0]);
                libc::_exit(wait_for(init));
            }
            libc::close(alive[1]);
            die_with_parent()?;
            let gone = parent_gone(alive[0]);
            libc::close(alive[0]);
            if gone {
                libc::_exit(1);
            }
            mount(
                Some(&self.proc_fs),
                &self.proc_dir,
                Some(&self.proc_fs),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            )?;
            let step = check(libc::fork())?;
            if step == 0 {
                return Ok(());
            }
            let mut code = 1;
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, 0);
                if pid == step {
                    code = exit_code(status);
                } else if pid < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)
                {
                    libc::_exit(code);
                }
            }
        }
    }
}

/// Asks the kernel to kill this process with SIGKILL when its parent ends. The init of a PID
/// namespace that is killed takes every process of its namespace with it.
fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl on plain values.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) }).map(drop)
}

/// Whether the parent that holds the write end of the pipe `read_end` has ended: the write end
/// is then closed, and a read finds the end of the pipe at once.
fn parent_gone(read_end: libc::c_int) -> bool {
    let mut poll = libc::pollfd {
        fd: read_end,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one pollfd owned by this frame, without waiting.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready != 0 && poll.revents & (libc::POLLHUP | libc::POLLIN) != 0
}

/// Host directories a step never sees: sockets of the host's services, the host's other
/// temporary files (and the sockets they hold), and users' homes. (`/tmp` is replaced by a
/// writable tmpfs of its own.)
const HIDDEN: &[&str] = &["/run", "/var/run", "/var/tmp", "/root", "/home"];

/// Waits for `pid` and returns the exit code to pass on (128 + the signal that killed it).
fn wait_for(pid: libc::pid_t) -> libc::c_int {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on a child of this process.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return exit_code(status);
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 1;
        }
    }
}

fn exit_code(status: libc::c_int) -> libc::c_int {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// The step keeps no capability, and can gain none (no setuid, no file capabilities): it can
/// neither remount the read-only host nor undo anything else of its sandbox.
fn drop_privileges() -> io::Result<()> {
    // SAFETY: prctl and capset on plain values.
    unsafe {
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        for cap in 0..=63 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0
                && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
            {
                return Err(io::Error::last_os_error());
            }
        }
        check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ))?;
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [
            Data {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
            Data {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
        ];
        check(libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as libc::c_int)?;
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// The mount flags a bind of `path` must keep when remounted read-only in a user namespace,
/// where the kernel locks them.
fn locked_flags(path: &CString) -> io::Result<libc::c_ulong> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is written by the call before it is read.
    check(unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) })?;
    let f = unsafe { st.assume_init() }.f_flag;
    let mut flags = 0;
    if f & libc::ST_NOSUID != 0 {
        flags |= libc::MS_NOSUID;
    }
    if f & libc::ST_NODEV != 0 {
        flags |= libc::MS_NODEV;
    }
    if f & libc::ST_NOEXEC != 0 {
        flags |= libc::MS_NOEXEC;
    }
    Ok(flags)
}

fn enter_namespaces(rootless: bool) -> io::Result<()> {
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWPID;
    if rootless {
        flags |= libc::CLONE_NEWUSER;
    }
    check(unsafe { libc::unshare(flags) }).map(drop)
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn mount(
    source: Option<&CString>,
    target: &CString,
    fstype: Option<&CString>,
    flags: libc::c_ulong,
    data: Option<&CString>,
) -> io::Result<()> {
    let p = |s: Option<&CString>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    check(unsafe { libc::mount(p(source), target.as_ptr(), p(fstype), flags, p(data).cast()) })
        .map(drop)
}

fn write_file(path: &CString, data: &CString) -> io::Result<()> {
    unsafe {
        let fd = check(libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC))?;
        let bytes = data.as_bytes();
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How steps can be isolated here: namespaces, or (only when `allow_leak`) not at all.
pub fn isolation(allow_leak: bool) -> Result<Isolation, SandboxError> {
    match probe() {
        Ok(()) => Ok(Isolation::Namespaces),
        Err(_) if allow_leak => Ok(Isolation::None),
        Err(reason) => Err(SandboxError::NoIsolation { reason }),
    }
}

/// Whether a step's whole setup (namespaces, mounts, the read-only host) works here: a child
/// goes through it over an empty scratch directory, so this process is never changed.
fn probe() -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("a scratch directory: {e}"))?;
    let sandbox = Sandbox::new(scratch.path(), Isolation::Namespaces);
    let setup = Setup::new(&sandbox, ROOT).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("/bin/true");
    cmd.env_clear().stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: `enter` only makes system calls on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || setup.enter());
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("a test child exited with {s}")),
        Err(e) => Err(format!(
            "namespaces, mounts or mount_setattr(2) (Linux 5.12 or later) failed: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_gone_sees_the_write_end_closed() {
        let mut fds = [0; 2];
        // SAFETY: pipe2 and close on fds owned by this test.
        unsafe {
            check(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC)).unwrap();
            assert!(!parent_gone(fds[0]), "the write end is still open");
            libc::close(fds[1]);
            assert!(parent_gone(fds[0]), "the write end is closed");
            libc::close(fds[0]);
        }
    }
}
