//! Opening durable engines: directory checks and turning library panics on
//! unreadable files into errors.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Whether a missing directory is created or reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IfMissing {
    Create,
    Fail,
}

/// Makes sure `path` is a usable directory, creating it if asked.
pub(crate) fn prepare_dir(engine: &'static str, path: &Path, if_missing: IfMissing) -> Result<()> {
    let open_err = |source: Error| Error::Open {
        engine,
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(open_err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path exists and is not a directory",
        )))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match if_missing {
            IfMissing::Fail => Err(Error::DirectoryNotFound {
                engine,
                path: path.to_path_buf(),
            }),
            IfMissing::Create => std::fs::create_dir_all(path).map_err(|e| open_err(e.into())),
        },
        Err(e) => Err(open_err(e.into())),
    }
}

/// Runs a library's open routine, wrapping its error, or a panic it raises
/// on unexpected file contents, into [`Error::Open`].
pub(crate) fn guarded_open<T>(
    engine: &'static str,
    path: &Path,
    open: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let wrap = |source: Error| Error::Open {
        engine,
        path: PathBuf::from(path),
        source: Box::new(source),
    };
    match catch_unwind(AssertUnwindSafe(open)) {
        Ok(Ok(engine)) => Ok(engine),
        Ok(Err(e)) => Err(wrap(e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(wrap(Error::Corruption(format!(
                "the library panicked while opening: {msg}"
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dir_is_created_or_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        assert!(matches!(
            prepare_dir("test", &dir, IfMissing::Fail),
            Err(Error::DirectoryNotFound { .. })
        ));
        prepare_dir("test", &dir, IfMissing::Create).unwrap();
        assert!(dir.is_dir());
        prepare_dir("test", &dir, IfMissing::Fail).unwrap();
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let err = prepare_dir("test", &file, IfMissing::Create).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn panics_become_open_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let res: Result<()> = guarded_open("test", tmp.path(), || panic!("boom"));
        let err = res.unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
