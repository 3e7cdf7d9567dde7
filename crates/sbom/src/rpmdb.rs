//! The rpm database as an SBOM reads it: `rpmdb.sqlite` (rpm 4.16 and
//! later, the format nodeimg's rpm backend writes), read from a temporary
//! copy with sqlite, each row of its `Packages` table an rpm header read
//! by [`nodeimg_rpm::rpmfile::Header`]. Berkeley DB (`Packages`) and ndb
//! (`Packages.db`) databases are not read.

use std::io::Write;

use nodeimg_rpm::rpmfile::{tag, Header};

use crate::{Error, Result};

/// The most packages read from one database.
pub const MAX_PACKAGES: usize = 100_000;

/// One package of the rpm database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `NAME`.
    pub name: String,
    /// `EPOCH`, when set.
    pub epoch: Option<u64>,
    /// `VERSION`.
    pub version: String,
    /// `RELEASE`.
    pub release: String,
    /// `ARCH` (`noarch` when absent).
    pub arch: String,
    /// `LICENSE`.
    pub license: Option<String>,
    /// `VENDOR`.
    pub vendor: Option<String>,
    /// The files it owns.
    pub files: Vec<String>,
}

impl Entry {
    /// `version-release`.
    pub fn version_release(&self) -> String {
        if self.release.is_empty() {
            self.version.clone()
        } else {
            format!("{}-{}", self.version, self.release)
        }
    }

    /// `epoch:version-release`, the epoch always written (as the lock and
    /// the packages' record write rpm versions).
    pub fn full_version(&self) -> String {
        format!("{}:{}", self.epoch.unwrap_or(0), self.version_release())
    }
}

/// The packages of the sqlite database `db` (with its write-ahead log
/// `wal`, when the image has one), `path` naming it in errors. Public keys
/// imported into the database (`gpg-pubkey`) are not packages and are left
/// out.
pub fn read_sqlite(db: &[u8], wal: Option<&[u8]>, path: &str) -> Result<Vec<Entry>> {
    let dir = tempfile::Builder::new()
        .prefix("nodeimg-rpmdb-")
        .tempdir()
        .map_err(|source| Error::Io {
            context: "creating a temporary folder for the rpm database".into(),
            source,
        })?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|source| Error::Io {
                context: format!("copying {path} to {}", p.display()),
                source,
            })
    };
    write("rpmdb.sqlite", db)?;
    if let Some(w) = wal {
        write("rpmdb.sqlite-wal", w)?;
    }
    let sql = |source| Error::Rpmdb {
        path: path.to_string(),
        source,
    };
    let conn = rusqlite::Connection::open_with_flags(
        dir.path().join("rpmdb.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    let mut stmt = conn
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql)? {
        if out.len() == MAX_PACKAGES {
            return Err(Error::database(
                path,
                format!("more than {MAX_PACKAGES} packages"),
                None,
            ));
        }
        let hnum: i64 = row.get(0).map_err(sql)?;
        let blob: Vec<u8> = row.get(1).map_err(sql)?;
        let what = format!("header {hnum}");
        let h = Header::from_stored(&blob, path, &what).map_err(|e| bad(path, e))?;
        if let Some(e) = entry(&h, path).map_err(|e| bad(path, e))? {
            out.push(e);
        }
    }
    Ok(out)
}

fn bad(path: &str, e: nodeimg_rpm::rpmfile::RpmError) -> Error {
    Error::database(path, e.reason.clone(), Some(Box::new(e)))
}

/// The package a header describes; `None` for an imported key.
fn entry(
    h: &Header,
    path: &str,
) -> std::result::Result<Option<Entry>, nodeimg_rpm::rpmfile::RpmError> {
    let Some(name) = h.string(tag::NAME, path)? else {
        return Ok(None);
    };
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    let epoch = h.ints(tag::EPOCH, path)?.and_then(|v| v.first().copied());
    Ok(Some(Entry {
        name,
        epoch,
        version: h.string(tag::VERSION, path)?.unwrap_or_default(),
        release: h.string(tag::RELEASE, path)?.unwrap_or_default(),
        arch: h
            .string(tag::ARCH, path)?
            .unwrap_or_else(|| "noarch".to_string()),
        license: h.string(tag::LICENSE, path)?,
        vendor: h.string(tag::VENDOR, path)?,
        files: h.file_paths(path)?,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An rpm header as the database stores it: (tag, type, data) entries.
    fn header(entries: &[(u32, u32, Vec<u8>, u32)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (t, typ, bytes, count) in entries {
            while typ == &4 && data.len() % 4 != 0 {
                data.push(0);
            }
            for v in [*t, *typ, data.len() as u32, *count] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(bytes);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    fn s(v: &str) -> Vec<u8> {
        let mut b = v.as_bytes().to_vec();
        b.push(0);
        b
    }

    pub(crate) fn db_with(headers: &[Vec<u8>]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rpmdb.sqlite");
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);",
        )
        .unwrap();
        for h in headers {
            c.execute("INSERT INTO Packages (blob) VALUES (?1)", [h])
                .unwrap();
        }
        drop(c);
        std::fs::read(p).unwrap()
    }

    pub(crate) fn demo_header(name: &str, epoch: Option<u32>) -> Vec<u8> {
        let mut e = vec![
            (tag::NAME, 6, s(name), 1),
            (tag::VERSION, 6, s("1.0"), 1),
            (tag::RELEASE, 6, s("1.el7"), 1),
            (tag::ARCH, 6, s("x86_64"), 1),
            (tag::LICENSE, 6, s("Apache-2.0"), 1),
            (1117, 8, [s("demo"), s("demo.conf")].concat(), 2),
            (1118, 8, [s("/usr/bin/"), s("/etc/")].concat(), 2),
        ];
        let mut idx = Vec::new();
        idx.extend_from_slice(&0u32.to_be_bytes());
        idx.extend_from_slice(&1u32.to_be_bytes());
        e.push((1116, 4, idx, 2));
        if let Some(n) = epoch {
            e.push((tag::EPOCH, 4, n.to_be_bytes().to_vec(), 1));
        }
        header(&e)
    }

    #[test]
    fn packages_of_an_sqlite_database() {
        let db = db_with(&[
            demo_header("demo", Some(2)),
            demo_header("gpg-pubkey", None),
        ]);
        let p = read_sqlite(&db, None, "/var/lib/rpm/rpmdb.sqlite").unwrap();
        assert_eq!(p.len(), 1);
        let d = &p[0];
        assert_eq!(
            (d.name.as_str(), d.epoch, d.arch.as_str()),
            ("demo", Some(2), "x86_64")
        );
        assert_eq!(d.full_version(), "2:1.0-1.el7");
        assert_eq!(d.license.as_deref(), Some("Apache-2.0"));
        assert_eq!(d.files, ["/usr/bin/demo", "/etc/demo.conf"]);
    }

    #[test]
    fn damaged_databases_are_errors() {
        let e = read_sqlite(b"not a database", None, "/var/lib/rpm/rpmdb.sqlite")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/var/lib/rpm/rpmdb.sqlite in the image: reading the rpm database"),
            "{e}"
        );
        let mut broken = demo_header("demo", None);
        broken.truncate(broken.len() - 3);
        let e = read_sqlite(&db_with(&[broken]), None, "/r")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/r in the image") && e.contains("header 1"),
            "{e}"
        );
    }
}
