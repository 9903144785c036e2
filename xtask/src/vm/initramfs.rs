//! The initramfs the VM boots: a newc cpio archive (written here, no `cpio`
//! needed) holding a static busybox, `/init` (`tests/vm/init.sh`), the sensor
//! binary as `/mamori` and the shared libraries `ldd` names for it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::INIT_SCRIPT;

/// A newc ("070701") cpio archive writer, enough for an initramfs.
struct Cpio<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Self {
        Cpio {
            out,
            ino: 1,
            written: 0,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len(),
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() + 1,
            0, // check
        );
        self.ino += 1;
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, 0o040755, (0, 0), &[])
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100000 | perm, (0, 0), data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, 0o120777, (0, 0), target.as_bytes())
    }

    fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, 0o020000 | perm, (major, minor), &[])
    }

    /// Write the trailer; returns the writer and the archive's length.
    fn finish(mut self) -> io::Result<(W, u64)> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.write(&[0u8; 3][..n])
    }
}

/// Shared libraries (and the dynamic loader) `binary` needs, as `ldd` names them.
fn shared_libs(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .context("running ldd")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!("ldd {} failed: {text}", binary.display());
    }
    parse_ldd(&text).with_context(|| format!("{}", binary.display()))
}

/// The absolute paths in `ldd` output (libraries and the loader).
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            bail!("shared library missing on the host: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Write the initramfs for `binary` to `out`; its size in bytes.
pub(super) fn build_initramfs(binary: &Path, busybox: &Path, out: &Path) -> Result<u64> {
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut c = Cpio::new(io::BufWriter::new(file));
    let mut dirs: Vec<String> = Vec::new();
    let mut mkdirs = |c: &mut Cpio<_>, path: &str| -> io::Result<()> {
        let mut cur = String::new();
        for part in path.split('/').filter(|s| !s.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            if !dirs.contains(&cur) {
                c.dir(&cur)?;
                dirs.push(cur.clone());
            }
        }
        Ok(())
    };
    for d in [
        "/bin",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
        "/etc",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
    ] {
        mkdirs(&mut c, d)?;
    }
    c.char_dev("/dev/console", 0o600, 5, 1)?;
    c.char_dev("/dev/null", 0o666, 1, 3)?;
    c.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    c.file("/etc/group", 0o644, b"root:x:0:\n")?;
    let bb = fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    c.file("/bin/busybox", 0o755, &bb)?;
    c.symlink("/bin/sh", "busybox")?;
    c.file("/init", 0o755, INIT_SCRIPT.as_bytes())?;

    let bin = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let mode = fs::metadata(binary)?.permissions().mode() & 0o777;
    c.file("/mamori", mode | 0o755, &bin)?;
    for lib in shared_libs(binary)? {
        let name = lib.to_string_lossy().into_owned();
        if name.starts_with("/bin/") {
            continue; // never shadow busybox
        }
        let data = fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
        if let Some(parent) = lib.parent() {
            mkdirs(&mut c, &parent.to_string_lossy())?;
        }
        c.file(&name, 0o755, &data)?;
    }
    Ok(c.finish()?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walk a newc archive back into (name, mode, data) entries.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0usize;
        loop {
            assert_eq!(off % 4, 0, "header not 4-aligned");
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap() as usize
            };
            let (mode, size, namesize) = (field(1) as u32, field(6), field(11));
            let name = String::from_utf8(b[110..110 + namesize - 1].to_vec()).unwrap();
            let data_at = (110 + namesize + 3) & !3;
            let data = b[data_at..data_at + size].to_vec();
            let next = (data_at + size + 3) & !3;
            off += next;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn cpio_entries_parse_back() {
        let mut c = Cpio::new(Vec::new());
        c.dir("/bin").unwrap();
        c.file("/bin/x", 0o755, b"hello").unwrap();
        c.symlink("/bin/y", "x").unwrap();
        c.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        c.file("/e", 0o644, b"").unwrap();
        let (out, len) = c.finish().unwrap();
        assert_eq!(len % 4, 0);
        assert_eq!(out.len() as u64, len);
        let e = parse(&out);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/x", "bin/y", "dev/console", "e"]);
        assert_eq!(e[1].1, 0o100755);
        assert_eq!(e[1].2, b"hello");
        assert_eq!(e[2].1, 0o120777);
        assert_eq!(e[2].2, b"x");
        assert_eq!(e[3].1, 0o020600);
        assert!(e[4].2.is_empty());
    }

    #[test]
    fn cpio_round_trips_through_offsets() {
        let mut out = Vec::new();
        {
            let mut c = Cpio::new(&mut out);
            c.file("a", 0o644, b"abc").unwrap();
            c.finish().unwrap();
        }
        assert_eq!(&out[..6], b"070701");
        // filesize field (7th) is 3, namesize (12th) is 2 ("a\0").
        let field = |i: usize| {
            u32::from_str_radix(
                std::str::from_utf8(&out[6 + 8 * i..14 + 8 * i]).unwrap(),
                16,
            )
            .unwrap()
        };
        assert_eq!(field(1), 0o100644);
        assert_eq!(field(6), 3);
        assert_eq!(field(11), 2);
        // header 110 + name 2 -> 112 (aligned), data 3 -> pad to 116.
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..115], b"abc");
        assert_eq!(&out[116..122], b"070701");
    }

    #[test]
    fn ldd_output_gives_libraries_and_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f94)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f95)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f96)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }
}
