//! Writing files so that a crash never leaves a half-written one: temp file in the same
//! directory, fsync, rename over the target, fsync of the directory. Used for the CA
//! state, the JWT signing key, minted SVIDs and `tokens.yaml`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Create `dir` (and parents) with mode 0700 if missing.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Replace `path` atomically with `bytes`, the new file having permission bits `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// The largest input file Warden reads (a config YAML, Rego module, policy data, PEM or
/// JWKS file): 16 MiB. Real ones are kilobytes; the cap keeps a mistaken path (a log, a
/// disk image) from eating the control plane's memory.
pub(crate) const MAX_INPUT_FILE: u64 = 16 << 20;

/// Read an operator-supplied text file: a regular file (symlinks followed) of at most
/// [`MAX_INPUT_FILE`] bytes, in UTF-8. A FIFO, device or directory is refused up front
/// instead of blocking or reading forever (`/dev/zero`, a named pipe); not-UTF-8 text is
/// refused naming the line and column of the first bad byte. A missing file keeps
/// `ErrorKind::NotFound`. A UTF-8 byte order mark is dropped (YAML 1.2 §5.2 allows one).
pub(crate) fn read_text(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(Error::new(ErrorKind::InvalidInput, format!("is {what}")));
    }
    let too_big = || {
        Error::new(
            ErrorKind::InvalidData,
            format!(
                "is larger than {} MiB, the limit for input files",
                MAX_INPUT_FILE >> 20
            ),
        )
    };
    if meta.len() > MAX_INPUT_FILE {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_INPUT_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INPUT_FILE {
        return Err(too_big());
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let column = good.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        Error::new(
            ErrorKind::InvalidData,
            format!("is not UTF-8 text: bad byte at line {line}, column {column}"),
        )
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}
