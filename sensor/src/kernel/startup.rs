//! What `Sensor::load` checks before touching the kernel, so a missing
//! privilege or an impossible ring size is one clear message naming it
//! rather than a misleading failure further on ("tracefs is not mounted",
//! exec events silently never fitting in the ring).

use super::AttachError;

/// The largest record the programs write: an exec with a full path, an
/// argument area cut to its head and tail (`ARGS_MAX + 1` bytes) and the
/// executable's path components.
pub const LARGEST_EVENT: usize = std::mem::size_of::<mamori_common::Header>()
    + std::mem::size_of::<mamori_common::ExecBody>()
    + mamori_common::PATH_MAX
    + mamori_common::ARGS_MAX
    + 1
    + mamori_common::DIR_MAX;

/// What the largest event takes in the ring: the kernel's 8-byte record
/// header, the record rounded up to 8 bytes.
pub const LARGEST_RECORD: usize = 8 + LARGEST_EVENT.next_multiple_of(8);

/// The smallest ring (a power of two) that holds the largest record.
pub const MIN_RING_BYTES: u32 = LARGEST_RECORD.next_power_of_two() as u32;

/// A ring size the kernel accepts and that holds the largest event.
pub fn check_ring_size(bytes: u32) -> Result<(), AttachError> {
    if bytes < MIN_RING_BYTES || !bytes.is_power_of_two() {
        return Err(AttachError::RingSize(bytes));
    }
    Ok(())
}

/// Capability numbers (linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// This process's effective capabilities (`CapEff` of /proc/self/status).
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The capabilities missing to load and attach the programs, named (empty:
/// none). CAP_SYS_ADMIN stands in for both, as the kernel allows.
pub fn missing_caps(eff: u64) -> Vec<&'static str> {
    let has = |c: u32| eff & (1u64 << c) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !admin && !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !admin && !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// Refuse to start without the privileges the programs need, naming what is
/// missing (instead of the misleading failure that follows, such as tracefs
/// not mounted); warn about what works only partly without CAP_SYS_PTRACE.
pub(super) fn check_privileges() -> Result<(), AttachError> {
    let Some(eff) = effective_caps() else {
        return Ok(()); // no /proc: let the load say what fails
    };
    let missing = missing_caps(eff);
    if !missing.is_empty() {
        return Err(AttachError::Privileges {
            missing: missing.join(" and "),
            // SAFETY: geteuid has no preconditions and cannot fail.
            uid: unsafe { libc::geteuid() },
        });
    }
    if eff & (1u64 << CAP_SYS_PTRACE) == 0 {
        log::warn!(
            "without CAP_SYS_PTRACE mamori cannot read other users' /proc/PID/cwd: relative \
             paths in their events cannot be resolved (fd.name stays relative)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_smaller_than_the_largest_event_is_refused() {
        assert_eq!(LARGEST_EVENT, 56 + 48 + 4096 + 4096 + 1 + 1024);
        assert_eq!(MIN_RING_BYTES, 16384);
        for bad in [4096, 8192, 16383, 20000] {
            let e = check_ring_size(bad).unwrap_err().to_string();
            assert!(e.contains(&bad.to_string()) && e.contains("16384"), "{e}");
            assert!(e.contains("largest event"), "{e}");
        }
        check_ring_size(16384).unwrap();
        check_ring_size(16 << 20).unwrap();
    }

    #[test]
    fn missing_capabilities_are_named() {
        assert_eq!(missing_caps(0), ["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing_caps(1 << CAP_BPF), ["CAP_PERFMON"]);
        assert!(missing_caps(1 << CAP_BPF | 1 << CAP_PERFMON).is_empty());
        assert!(missing_caps(1 << CAP_SYS_ADMIN).is_empty());
        let e = AttachError::Privileges {
            missing: "CAP_BPF and CAP_PERFMON".into(),
            uid: 65534,
        }
        .to_string();
        assert!(
            e.contains("root") && e.contains("missing CAP_BPF and CAP_PERFMON"),
            "{e}"
        );
    }
}
