//! The write connection's WAL writes, handed to the kernel in one piece per
//! commit.
//!
//! SQLite writes each WAL frame with two `pwrite`s, its 24-byte header and
//! then its page, so a commit of 20 pages cost 40 system calls, each also
//! finding and marking two pages of the file's cache (a frame straddles
//! them). On this VM that was 165 µs a commit against 6 µs for one write of
//! the same bytes, and 8–9% of chatrelay's CPU under submits, all of it in
//! the one writer.
//!
//! This VFS wraps the platform's. Every file it opens is the platform's own,
//! untouched, except a WAL file: its consecutive writes gather in a buffer
//! that goes out in one `pwrite` before anything that must see them — a
//! sync, a read, a truncate, asking the file's size, a file control,
//! closing — or before a write elsewhere in the file. Readers are none the
//! wiser: a WAL frame counts only once the WAL index names it, and SQLite
//! publishes a commit there only after syncing its frames when
//! `synchronous = full`. Under `normal` a commit does not sync, so the
//! write connection then opens with the platform's VFS (see
//! [`super::connect`]). A crash loses only what was never synced, which is
//! what a crash loses anyway.

use std::{
    ffi::{c_char, c_int, c_void, CStr},
    ptr,
    sync::OnceLock,
};

use rusqlite::ffi::{
    sqlite3_file, sqlite3_int64, sqlite3_io_methods, sqlite3_vfs, sqlite3_vfs_find,
    sqlite3_vfs_register, SQLITE_OK, SQLITE_OPEN_WAL,
};

/// The VFS's name, for `SqliteConnectOptions::vfs`.
pub(super) const NAME: &str = "chatrelay-wal";
const NAME_C: &CStr = c"chatrelay-wal";

/// A buffer this full goes out before it takes more: the most the
/// platform's VFS writes in one call (it masks the length with `0x1ffff`).
/// About 31 frames of 4 KiB; a larger commit takes two writes or more.
const LIMIT: usize = 0x1ffff;

/// What the VFS needs about the platform's: where a WAL file's buffer
/// sits past the platform's own file, and the methods WAL files get.
struct Wrapped {
    offset: usize,
    methods: OnceLock<Methods>,
}

/// The WAL files' methods: the platform's, with the ones that see the
/// file's bytes ahead of the buffer.
struct Methods {
    platform: *const sqlite3_io_methods,
    ours: sqlite3_io_methods,
}

// SAFETY: both are tables of function pointers that SQLite never changes.
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

static WRAPPED: OnceLock<Result<Wrapped, String>> = OnceLock::new();

/// A WAL file's writes not yet made.
struct Pending {
    bytes: Vec<u8>,
    /// The file offset of `bytes[0]`.
    start: i64,
}

/// Registers the VFS (once per process). Errors if SQLite has no default
/// VFS to wrap.
pub(super) fn register() -> Result<(), String> {
    WRAPPED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find` initialises SQLite if need be; the
            // platform's VFS it returns lives as long as the process.
            let platform = unsafe { sqlite3_vfs_find(ptr::null()) };
            if platform.is_null() {
                return Err("SQLite has no default VFS".into());
            }
            let align = std::mem::align_of::<Pending>();
            // SAFETY: as above.
            let size = unsafe { (*platform).szOsFile } as usize;
            let offset = size.div_ceil(align) * align;
            let mut ours = unsafe { ptr::read(platform) };
            ours.szOsFile = (offset + std::mem::size_of::<Pending>()) as c_int;
            ours.zName = NAME_C.as_ptr();
            ours.pNext = ptr::null_mut();
            ours.pAppData = platform.cast();
            ours.xOpen = Some(open);
            // SAFETY: the copy is leaked, so it outlives every connection;
            // its other methods are the platform's and never read
            // `pAppData` or the name from the VFS they are given.
            let rc = unsafe { sqlite3_vfs_register(Box::leak(Box::new(ours)), 0) };
            if rc != SQLITE_OK {
                return Err(format!("sqlite3_vfs_register failed ({rc})"));
            }
            Ok(Wrapped {
                offset,
                methods: OnceLock::new(),
            })
        })
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

fn wrapped() -> &'static Wrapped {
    match WRAPPED.get() {
        Some(Ok(wrapped)) => wrapped,
        _ => unreachable!("files open through the VFS only once it is registered"),
    }
}

/// Where a file opened by this VFS keeps its buffer: past the platform's
/// own file, in the memory SQLite gave both.
///
/// # Safety
/// `file` must be a file this VFS opened.
unsafe fn slot(file: *mut sqlite3_file) -> *mut Pending {
    file.cast::<u8>().add(wrapped().offset).cast::<Pending>()
}

/// # Safety
/// `file` must be a WAL file this VFS opened.
unsafe fn pending<'a>(file: *mut sqlite3_file) -> &'a mut Pending {
    &mut *slot(file)
}

/// The platform's methods for WAL files, set when the first opened.
fn platform() -> &'static sqlite3_io_methods {
    let methods = wrapped().methods.get().expect("set when a WAL file opened");
    // SAFETY: SQLite's method tables are static.
    unsafe { &*methods.platform }
}

/// Opens through the platform's VFS; a WAL file then gets its buffer.
unsafe extern "C" fn open(
    vfs: *mut sqlite3_vfs,
    name: *const c_char,
    file: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let platform_vfs = (*vfs).pAppData.cast::<sqlite3_vfs>();
    let Some(platform_open) = (*platform_vfs).xOpen else {
        return rusqlite::ffi::SQLITE_CANTOPEN;
    };
    let rc = platform_open(platform_vfs, name, file, flags, out_flags);
    if rc != SQLITE_OK || flags & SQLITE_OPEN_WAL == 0 || (*file).pMethods.is_null() {
        return rc;
    }
    let found = (*file).pMethods;
    let methods = wrapped().methods.get_or_init(|| Methods {
        platform: found,
        ours: sqlite3_io_methods {
            xClose: Some(close),
            xRead: Some(read),
            xWrite: Some(write),
            xTruncate: Some(truncate),
            xSync: Some(sync),
            xFileSize: Some(file_size),
            xFileControl: Some(file_control),
            ..*found
        },
    });
    if !ptr::eq(methods.platform, found) {
        // Another kind of file than the first WAL's: left as it is.
        return rc;
    }
    ptr::write(
        slot(file),
        Pending {
            bytes: Vec::new(),
            start: 0,
        },
    );
    (*file).pMethods = &methods.ours;
    rc
}

/// Makes the buffered writes, in one call.
unsafe fn flush(file: *mut sqlite3_file) -> c_int {
    flush_pending(file, pending(file))
}

unsafe fn flush_pending(file: *mut sqlite3_file, pending: &mut Pending) -> c_int {
    if pending.bytes.is_empty() {
        return SQLITE_OK;
    }
    let write = platform().xWrite.expect("files can be written");
    let rc = write(
        file,
        pending.bytes.as_ptr().cast(),
        pending.bytes.len() as c_int,
        pending.start,
    );
    // Failed or not, these bytes are done with: SQLite fails the
    // transaction, and writes its frames again in the next one.
    pending.bytes.clear();
    rc
}

unsafe extern "C" fn write(
    file: *mut sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: sqlite3_int64,
) -> c_int {
    let pending = pending(file);
    let amount_bytes = amount as usize;
    let follows = offset == pending.start + pending.bytes.len() as i64;
    if pending.bytes.is_empty() || !follows || pending.bytes.len() + amount_bytes > LIMIT {
        let rc = flush_pending(file, pending);
        if rc != SQLITE_OK {
            return rc;
        }
        pending.start = offset;
    }
    pending
        .bytes
        .extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), amount_bytes));
    SQLITE_OK
}

unsafe extern "C" fn read(
    file: *mut sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: sqlite3_int64,
) -> c_int {
    match flush(file) {
        SQLITE_OK => platform().xRead.expect("files can be read")(file, data, amount, offset),
        rc => rc,
    }
}

unsafe extern "C" fn truncate(file: *mut sqlite3_file, size: sqlite3_int64) -> c_int {
    match flush(file) {
        SQLITE_OK => platform().xTruncate.expect("files can be cut")(file, size),
        rc => rc,
    }
}

unsafe extern "C" fn sync(file: *mut sqlite3_file, flags: c_int) -> c_int {
    match flush(file) {
        SQLITE_OK => platform().xSync.expect("files can be synced")(file, flags),
        rc => rc,
    }
}

unsafe extern "C" fn file_size(file: *mut sqlite3_file, size: *mut sqlite3_int64) -> c_int {
    match flush(file) {
        SQLITE_OK => platform().xFileSize.expect("files have a size")(file, size),
        rc => rc,
    }
}

unsafe extern "C" fn file_control(file: *mut sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    match flush(file) {
        SQLITE_OK => platform().xFileControl.expect("files take controls")(file, op, arg),
        rc => rc,
    }
}

unsafe extern "C" fn close(file: *mut sqlite3_file) -> c_int {
    let flushed = flush(file);
    ptr::drop_in_place(pending(file));
    let closed = platform().xClose.expect("files can be closed")(file);
    if flushed != SQLITE_OK {
        flushed
    } else {
        closed
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    use super::*;

    /// A new database in a directory of its own, its write connection on
    /// this VFS and holding `table`.
    fn writer_with(table: &str) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        register().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.sqlite");
        let conn = Connection::open_with_flags_and_vfs(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            NAME,
        )
        .unwrap();
        conn.execute_batch("PRAGMA journal_mode = wal; PRAGMA synchronous = full;")
            .unwrap();
        conn.execute_batch(&format!("CREATE TABLE {table}"))
            .unwrap();
        (dir, path, conn)
    }

    /// Every commit through the buffered WAL is seen at once by another
    /// connection on the platform's VFS, and survives closing and opening
    /// again, a WAL restart and a checkpoint included.
    #[test]
    fn commits_are_seen_at_once_and_kept() {
        let (_dir, path, writer) = writer_with("t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
        let reader = Connection::open(&path).unwrap();
        let body = "x".repeat(3_000);
        for round in 0..200i64 {
            writer.execute_batch("BEGIN IMMEDIATE").unwrap();
            for i in 0..10 {
                writer
                    .execute(
                        "INSERT INTO t (id, body) VALUES (?1, ?2)",
                        (round * 10 + i, &body),
                    )
                    .unwrap();
            }
            // A page written twice in one transaction, and read back.
            writer
                .execute("UPDATE t SET body = 'first' WHERE id = ?1", [round * 10])
                .unwrap();
            writer.execute_batch("COMMIT").unwrap();
            let seen: i64 = reader
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(seen, round * 10 + 10, "round {round}");
            if round == 100 {
                let (_, log, copied): (i64, i64, i64) = writer
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .unwrap();
                assert_eq!(log, copied);
            }
        }
        drop(reader);
        drop(writer);
        let again = Connection::open(&path).unwrap();
        let (count, firsts): (i64, i64) = again
            .query_row("SELECT count(*), sum(body = 'first') FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((count, firsts), (2_000, 200));
        let check: String = again
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// A transaction rolled back leaves nothing, and the next commit
    /// reuses its place in the WAL.
    #[test]
    fn a_rollback_leaves_nothing() {
        let (_dir, path, writer) = writer_with("t (id INTEGER PRIMARY KEY)");
        writer
            .execute_batch("BEGIN; INSERT INTO t VALUES (1); ROLLBACK;")
            .unwrap();
        writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        let reader = Connection::open(&path).unwrap();
        let ids: Vec<i64> = reader
            .prepare("SELECT id FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, [2]);
    }
}
