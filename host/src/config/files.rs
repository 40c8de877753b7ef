//! Reading files that come from outside (config files, plugins, cassettes, target lists) with
//! a size cap, so a path naming `/dev/zero`, a FIFO or a huge file cannot make the host read
//! without end. The cap is named in the error.

use bytesize::ByteSize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why an outside file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a regular file (it is {kind})", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{} is larger than the {what} limit of {}", path.display(), ByteSize::b(*.cap))]
    TooLarge {
        path: PathBuf,
        /// What the file is, as the limit's name says it: "plugin", "config file", …
        what: &'static str,
        cap: u64,
    },
    #[error("{} is not UTF-8 text: {source}", path.display())]
    NotText {
        path: PathBuf,
        #[source]
        source: std::string::FromUtf8Error,
    },
}

impl FileError {
    /// Whether the file does not exist (a cassette's optional files may be missing).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads a regular file (symlinks followed) of at most `cap` bytes. Devices, FIFOs, sockets and
/// directories are refused before they are opened, so opening cannot block or read forever; the
/// cap is checked against the size and again while reading (a file may grow in between).
pub fn read_regular(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let io = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    check_regular(path, &std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    // The opened file may differ from the one looked at (a rename in between).
    let metadata = file.metadata().map_err(io)?;
    check_regular(path, &metadata)?;
    if metadata.len() > cap {
        return Err(too_large(path, what, cap));
    }
    read_capped(file, path, cap, what)
}

/// Like [`read_regular`], as UTF-8 text.
pub fn read_regular_text(path: &Path, cap: u64, what: &'static str) -> Result<String, FileError> {
    let bytes = read_regular(path, cap, what)?;
    String::from_utf8(bytes).map_err(|source| FileError::NotText {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads at most `cap` bytes from any file, FIFOs and devices included (a target list may come
/// from `/dev/stdin`); more is refused.
pub fn read_any_capped(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let file = std::fs::File::open(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_capped(file, path, cap, what)
}

fn read_capped(
    file: std::fs::File,
    path: &Path,
    cap: u64,
    what: &'static str,
) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > cap {
        return Err(too_large(path, what, cap));
    }
    Ok(bytes)
}

fn too_large(path: &Path, what: &'static str, cap: u64) -> FileError {
    FileError::TooLarge {
        path: path.to_path_buf(),
        what,
        cap,
    }
}

fn check_regular(path: &Path, metadata: &std::fs::Metadata) -> Result<(), FileError> {
    let kind = metadata.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(FileError::NotAFile {
        path: path.to_path_buf(),
        kind: describe(kind),
    })
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_before_reading() {
        let error = read_regular(Path::new("/dev/zero"), 1024, "plugin").unwrap_err();
        assert!(
            error.to_string() == "/dev/zero is not a regular file (it is a character device)",
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let error = read_regular(dir.path(), 1024, "plugin").unwrap_err();
        assert!(error.to_string().contains("a directory"), "{error}");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_naming_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.wasm");
        std::fs::write(&path, vec![0u8; 2049]).unwrap();
        let error = read_regular(&path, 2048, "plugin").unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("is larger than the plugin limit of 2.0 KiB"),
            "{error}"
        );
        std::fs::write(&path, vec![7u8; 2048]).unwrap();
        assert_eq!(read_regular(&path, 2048, "plugin").unwrap().len(), 2048);
    }

    #[test]
    fn a_symlink_to_a_regular_file_is_followed_and_one_to_a_device_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        std::fs::write(&real, "a = 1\n").unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            read_regular_text(&link, 64, "config file").unwrap(),
            "a = 1\n"
        );
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let error = read_regular(&zero, 64, "config file").unwrap_err();
        assert!(matches!(error, FileError::NotAFile { .. }), "{error}");
    }

    #[test]
    fn streams_without_a_size_stop_at_the_cap() {
        // /dev/zero never ends; the reader stops one byte past the cap.
        let error = read_any_capped(Path::new("/dev/zero"), 4096, "target list").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("larger than the target list limit of 4.0 KiB"),
            "{error}"
        );
    }
}
