//! Windows: a protected DACL for the state directory, Ctrl-Break and TerminateProcess for
//! children, and console control events for stopping.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::ptr;

use tokio::process::{Child, Command};
use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
use windows_sys::Win32::Foundation::{ERROR_ALREADY_EXISTS, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1, SE_FILE_OBJECT,
    SetSecurityInfo,
};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES,
};
use windows_sys::Win32::Storage::FileSystem::{CreateDirectoryW, FILE_GENERIC_WRITE, WRITE_DAC};
use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent};
use windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP;

/// Full control for SYSTEM, the Administrators and the object's owner (OW, the account that
/// runs the agent); protected (`P`), so nothing is inherited from `%ProgramData%`, where every
/// user may read; inherited (`OICI`) by everything created below.
const OWNER_ONLY_SDDL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)";
/// The same for a file, which has nothing to pass on.
const OWNER_ONLY_FILE_SDDL: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;OW)";

/// `%ProgramData%\Holdfast`: machine-wide data, `C:\ProgramData` unless moved.
fn holdfast_data() -> PathBuf {
    std::env::var_os("ProgramData")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
        .join("Holdfast")
}

pub fn default_config_file() -> PathBuf {
    holdfast_data().join("agent.yaml")
}

pub fn default_state_dir() -> PathBuf {
    holdfast_data().join("agent")
}

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// A security descriptor made from SDDL, freed on drop.
struct Descriptor(PSECURITY_DESCRIPTOR);

impl Descriptor {
    fn from_sddl(sddl: &str) -> io::Result<Descriptor> {
        let text = wide(OsStr::new(sddl));
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: a NUL-terminated string in, a LocalAlloc'ed descriptor out, freed in drop.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Descriptor(sd))
    }

    fn dacl(&self) -> io::Result<*mut ACL> {
        let (mut present, mut defaulted) = (0, 0);
        let mut dacl: *mut ACL = ptr::null_mut();
        // SAFETY: a valid descriptor; the ACL points into it and lives as long as `self`.
        let ok =
            unsafe { GetSecurityDescriptorDacl(self.0, &mut present, &mut dacl, &mut defaulted) };
        if ok == 0 || present == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(dacl)
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0) };
    }
}

/// Clears the read-only attribute, which a restored file may carry and which stops its removal.
pub fn make_removable(path: &Path, _is_dir: bool) -> io::Result<()> {
    let mut permissions = fs::metadata(path)?.permissions();
    // On Windows this is the read-only attribute, not a mode open to everyone.
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    fs::set_permissions(path, permissions)
}

/// Creates `path` (and its missing parents, with their inherited ACLs) with the owner-only DACL
/// set at creation, so there is no moment when others could open it. An existing directory is
/// left as it is, as on Unix.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let descriptor = Descriptor::from_sddl(OWNER_ONLY_SDDL)?;
    let attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    let name = wide(path.as_os_str());
    // SAFETY: a NUL-terminated path and attributes that outlive the call.
    if unsafe { CreateDirectoryW(name.as_ptr(), &attributes) } == 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(ERROR_ALREADY_EXISTS as i32) {
            return Err(e);
        }
    }
    Ok(())
}

/// Creates or truncates a file and gives it the owner-only DACL before anything is written, as
/// Unix gives mode 0600: whatever the directory's ACL, the file is the owner's alone.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let file = fs::OpenOptions::new()
        .write(true)
        .access_mode(FILE_GENERIC_WRITE | WRITE_DAC)
        .create(true)
        .truncate(true)
        .open(path)?;
    let descriptor = Descriptor::from_sddl(OWNER_ONLY_FILE_SDDL)?;
    // SAFETY: an open handle with WRITE_DAC, and an ACL inside a live descriptor.
    let status = unsafe {
        SetSecurityInfo(
            file.as_raw_handle(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            descriptor.dacl()?,
            ptr::null(),
        )
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    Ok(file)
}

/// Nothing to do: NTFS journals renames and removals itself, and a directory cannot be opened
/// for flushing without backup privileges.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Starts the child as a new process group, the unit Ctrl-Break is sent to.
pub fn isolate(cmd: &mut Command) {
    cmd.creation_flags(CREATE_NEW_PROCESS_GROUP);
}

/// Ctrl-Break to the child's process group, which restic (Go) handles like SIGINT: it removes
/// its lock and exits. Needs a console shared with the child (the service allocates one); false
/// when it could not be sent, and the caller kills instead.
pub fn interrupt(child: &Child) -> bool {
    match child.id() {
        // SAFETY: plain call; the group id is the pid of a child we started with
        // CREATE_NEW_PROCESS_GROUP and have not reaped.
        Some(pid) => unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid) != 0 },
        None => false,
    }
}

/// TerminateProcess.
pub fn kill(child: &mut Child) -> io::Result<()> {
    child.start_kill()
}

/// Resolves at the first Ctrl-C, Ctrl-Break, console close or system shutdown. The service's
/// stop request arrives through the Service Control Manager instead.
pub fn shutdown_signals() -> io::Result<impl Future<Output = ()>> {
    let mut c = ctrl_c()?;
    let mut brk = ctrl_break()?;
    let mut close = ctrl_close()?;
    let mut shutdown = ctrl_shutdown()?;
    Ok(async move {
        tokio::select! {
            _ = c.recv() => {}
            _ = brk.recv() => {}
            _ = close.recv() => {}
            _ = shutdown.recv() => {}
        }
    })
}

/// The owner and DACL of `path` as SDDL (`O:...D:...`).
#[cfg(test)]
fn dacl_sddl(path: &Path) -> io::Result<String> {
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, GetNamedSecurityInfoW,
    };
    use windows_sys::Win32::Security::OWNER_SECURITY_INFORMATION;
    let wanted = DACL_SECURITY_INFORMATION | OWNER_SECURITY_INFORMATION;

    let name = wide(path.as_os_str());
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: out-pointers to locals; the descriptor is LocalFree'd below.
    let status = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            wanted,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut sd,
        )
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    let descriptor = Descriptor(sd);
    let mut text: *mut u16 = ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: the descriptor is valid; the string is LocalAlloc'ed and freed below.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor.0,
            SDDL_REVISION_1,
            wanted,
            &mut text,
            &mut len,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `len` UTF-16 units (with the NUL) at `text`.
    let units = unsafe { std::slice::from_raw_parts(text, len as usize) };
    let sddl = String::from_utf16_lossy(units)
        .trim_end_matches('\0')
        .to_string();
    // SAFETY: allocated by the conversion above.
    unsafe { LocalFree(text.cast()) };
    Ok(sddl)
}

/// Ok when only SYSTEM, the Administrators and the owner (as OW or by its SID) are granted
/// anything on `path`; otherwise its owner and DACL, as SDDL.
#[cfg(test)]
pub fn check_owner_only(path: &Path) -> Result<(), String> {
    let sddl = dacl_sddl(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (owner, dacl) = sddl.split_once("D:").unwrap_or_default();
    let owner = owner.strip_prefix("O:").unwrap_or_default();
    let aces: Vec<&str> = dacl
        .split('(')
        .skip(1)
        .map(|ace| ace.trim_end_matches(')'))
        .collect();
    let only_owner = !aces.is_empty()
        && aces.iter().all(|ace| {
            let fields: Vec<&str> = ace.split(';').collect();
            fields.len() == 6 && (matches!(fields[5], "SY" | "BA" | "OW") || fields[5] == owner)
        });
    if only_owner {
        Ok(())
    } else {
        Err(format!("{}: {sddl}", path.display()))
    }
}
