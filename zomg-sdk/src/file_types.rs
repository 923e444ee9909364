//! Wire types of file transfer: `GET/PUT …/boxes/{name}/files` and `GET …/files/stat`
//! (SPEC §6, §11).
//!
//! `GET …/files?path=/p` answers a regular file as its bytes, or a directory as a tar stream
//! of its contents (`content-type: application/x-tar`); either way the metadata of `/p` rides
//! in the `x-zomg-*` headers ([`FileStat::to_headers`]). `PUT …/files?path=/p&mode=0644`
//! writes the body to `/p` atomically; with `content-type: application/x-tar` it extracts
//! the archive into the directory `/p` instead. Both answer [`UploadResult`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Content type of a tar stream (directory downloads and uploads).
pub const TAR_CONTENT_TYPE: &str = "application/x-tar";
/// Header: `file` or `directory`.
pub const HEADER_TYPE: &str = "x-zomg-type";
/// Header: permission bits as four octal digits, e.g. `0755`.
pub const HEADER_MODE: &str = "x-zomg-mode";
/// Header: owner uid (numeric, as seen in the box).
pub const HEADER_UID: &str = "x-zomg-uid";
/// Header: owner gid.
pub const HEADER_GID: &str = "x-zomg-gid";
/// Header: modification time, seconds since the Unix epoch.
pub const HEADER_MTIME: &str = "x-zomg-mtime";
/// Header: size in bytes of a regular file (a directory's tar has no size up front).
pub const HEADER_SIZE: &str = "x-zomg-size";

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (only inside archives and upload counts; paths are followed).
    Symlink,
    /// A device node, FIFO or socket: never transferred.
    Other,
}

impl FileKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FileKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(FileKind::File),
            "directory" => Ok(FileKind::Directory),
            "symlink" => Ok(FileKind::Symlink),
            "other" => Ok(FileKind::Other),
            _ => Err(format!("unknown file type {s:?}")),
        }
    }
}

/// Metadata of a path in a box: the answer of `GET …/files/stat`, and the `x-zomg-*`
/// headers of a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// The path in the box, normalized (`/a/./b/../c` → `/a/c`).
    pub path: String,
    /// File or directory (a final symlink is followed, inside the box).
    #[serde(rename = "type")]
    pub kind: FileKind,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// Permission bits, including setuid/setgid/sticky (`0o7777` at most); on the wire four
    /// octal digits, e.g. `"0755"`.
    #[serde(with = "octal_mode")]
    pub mode: u32,
    /// Owner uid as seen in the box.
    pub uid: u32,
    /// Owner gid as seen in the box.
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// The data volume holding the path, when it is under a data-volume mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

impl FileStat {
    /// The `x-zomg-*` headers that describe this path on a download.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (HEADER_TYPE, self.kind.as_str().to_owned()),
            (HEADER_MODE, format_mode(self.mode)),
            (HEADER_UID, self.uid.to_string()),
            (HEADER_GID, self.gid.to_string()),
            (HEADER_MTIME, self.mtime.to_string()),
        ];
        if self.kind == FileKind::File {
            h.push((HEADER_SIZE, self.size.to_string()));
        }
        h
    }

    /// Reads the headers of a download; `path` is the path that was asked for.
    pub fn from_headers(path: &str, headers: &http::HeaderMap) -> Result<Self, String> {
        let get = |name: &str| -> Result<&str, String> {
            headers
                .get(name)
                .ok_or_else(|| format!("the answer has no {name} header"))?
                .to_str()
                .map_err(|_| format!("the {name} header is not text"))
        };
        let num = |name: &str| -> Result<u64, String> {
            get(name)?
                .parse()
                .map_err(|_| format!("the {name} header is not a number"))
        };
        let kind: FileKind = get(HEADER_TYPE)?.parse()?;
        Ok(FileStat {
            path: path.to_owned(),
            kind,
            size: if kind == FileKind::File {
                num(HEADER_SIZE)?
            } else {
                0
            },
            mode: parse_mode(get(HEADER_MODE)?)?,
            uid: u32::try_from(num(HEADER_UID)?).map_err(|_| "uid out of range".to_owned())?,
            gid: u32::try_from(num(HEADER_GID)?).map_err(|_| "gid out of range".to_owned())?,
            mtime: get(HEADER_MTIME)?
                .parse()
                .map_err(|_| format!("the {HEADER_MTIME} header is not a number"))?,
            volume: None,
        })
    }
}

/// Answer of `PUT …/files`: what was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResult {
    /// The path written (the file, or the directory a tar was extracted into), normalized.
    pub path: String,
    /// Bytes of file content written (the body's length for a single file).
    pub bytes: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub directories: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Hard links created.
    pub hard_links: u64,
    /// Archive entries not written (device nodes, FIFOs, sockets): how many.
    #[serde(default)]
    pub skipped: u64,
    /// The first few skipped entries, for the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_examples: Vec<String>,
    /// The data volume the write landed in, when the path is under a data-volume mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

/// Four octal digits: `0o755` → `"0755"`.
pub fn format_mode(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// Parses octal permission bits (`755`, `0755`, `0o755`); at most `0o7777`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = u32::from_str_radix(digits, 8).map_err(|_| format!("invalid mode {s:?}"))?;
    if digits.is_empty() || mode > 0o7777 {
        return Err(format!(
            "invalid mode {s:?}: expected octal permission bits up to 7777"
        ));
    }
    Ok(mode)
}

mod octal_mode {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_mode(*mode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_mode(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_text() {
        assert_eq!(format_mode(0o755), "0755");
        assert_eq!(format_mode(0o4755), "4755");
        assert_eq!(format_mode(0o100644), "0644");
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o1777"), Ok(0o1777));
        assert!(parse_mode("").is_err());
        assert!(parse_mode("0o").is_err());
        assert!(parse_mode("10000").is_err());
        assert!(parse_mode("0x1f").is_err());
        assert!(parse_mode("9").is_err());
    }

    #[test]
    fn stat_round_trips_through_json_and_headers() {
        let stat = FileStat {
            path: "/etc/hosts".into(),
            kind: FileKind::File,
            size: 12,
            mode: 0o644,
            uid: 0,
            gid: 42,
            mtime: 1_700_000_000,
            volume: None,
        };
        let json = serde_json::to_value(&stat).unwrap();
        assert_eq!(json["mode"], "0644");
        assert_eq!(json["type"], "file");
        assert_eq!(serde_json::from_value::<FileStat>(json).unwrap(), stat);
        let mut headers = http::HeaderMap::new();
        for (k, v) in stat.to_headers() {
            headers.insert(k, v.parse().unwrap());
        }
        assert_eq!(headers[HEADER_MODE], "0644");
        assert_eq!(
            FileStat::from_headers("/etc/hosts", &headers).unwrap(),
            stat
        );
        headers.remove(HEADER_UID);
        assert_eq!(
            FileStat::from_headers("/etc/hosts", &headers).unwrap_err(),
            "the answer has no x-zomg-uid header"
        );
    }
}
