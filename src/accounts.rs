//! The names of users and groups, for messages about who owns a file: an
//! operator reads `herald`, not `uid 103`.

/// The name of user `uid`, or the number when it has none.
pub fn user_name(uid: u32) -> String {
    lookup(uid, |id, buf| {
        // SAFETY: an all-zero passwd is a valid value for getpwuid_r to fill.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live buffer of the size given; on
        // success `found` points at `pwd`, whose strings live in `buf`.
        let rc = unsafe {
            libc::getpwuid_r(id, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut found)
        };
        (rc == 0 && !found.is_null()).then_some(pwd.pw_name)
    })
}

/// The name of group `gid`, or the number when it has none.
pub fn group_name(gid: u32) -> String {
    lookup(gid, |id, buf| {
        // SAFETY: an all-zero group is a valid value for getgrgid_r to fill.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in user_name.
        let rc = unsafe {
            libc::getgrgid_r(id, &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut found)
        };
        (rc == 0 && !found.is_null()).then_some(grp.gr_name)
    })
}

/// Runs a `get*id_r` call with a buffer for its strings, and reads the
/// name it points at (inside that buffer).
fn lookup(id: u32, call: impl FnOnce(u32, &mut [u8]) -> Option<*mut libc::c_char>) -> String {
    let mut buf = vec![0u8; 4096];
    match call(id, &mut buf) {
        Some(name) if !name.is_null() => {
            // SAFETY: a NUL-terminated string inside `buf`, which lives here.
            unsafe { std::ffi::CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        }
        _ => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_or_numbers() {
        assert_eq!(user_name(0), "root");
        assert_eq!(group_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "4000000000");
        assert_eq!(group_name(4_000_000_000), "4000000000");
    }
}
