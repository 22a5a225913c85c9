//! The host a local cluster runs on (kind, k3d, minikube, microk8s): its inotify limits, free
//! memory and CPUs against what the release's catalog says Kubeflow needs. Today's Kubeflow runs
//! so many Pods that the default `fs.inotify.max_user_instances` (128) makes them fail with
//! "too many open files".
//!
//! Everything is read below a proc root: `/proc`, or `$KFCTL_PROC_ROOT` (tests point it at a fake
//! tree holding `sys/fs/inotify/max_user_instances`, `sys/fs/inotify/max_user_watches`,
//! `meminfo` and `cpuinfo`).

use std::path::{Path, PathBuf};

use super::doctor::{Finding, Severity};
use crate::registry::catalog::Release;

/// Where kfctl reads the host's /proc: `$KFCTL_PROC_ROOT`, else `/proc`.
pub fn proc_root() -> PathBuf {
    std::env::var_os("KFCTL_PROC_ROOT").map_or_else(|| PathBuf::from("/proc"), PathBuf::from)
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `MemAvailable` of `meminfo`, in bytes.
fn available_memory(root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(root.join("meminfo")).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Logical CPUs: the `processor` lines of `cpuinfo`.
fn cpu_count(root: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(root.join("cpuinfo")).ok()?;
    let count = text.lines().filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor")).count();
    (count > 0).then_some(count as u32)
}

/// The inotify check: both limits at least what `release` needs, else the exact commands.
pub fn check_inotify(root: &Path, release: &Release) -> Finding {
    let needs = [
        ("max_user_instances", release.inotify.max_user_instances),
        ("max_user_watches", release.inotify.max_user_watches),
    ];
    let mut low = Vec::new();
    let mut have = Vec::new();
    for (name, needed) in needs {
        let path = root.join("sys/fs/inotify").join(name);
        match read_number(&path) {
            Some(value) if value >= needed => have.push(format!("fs.inotify.{name}={value}")),
            Some(value) => low.push((name, value.to_string(), needed)),
            None => low.push((name, format!("unreadable ({})", path.display()), needed)),
        }
    }
    if low.is_empty() {
        return Finding {
            check: "inotify",
            severity: Severity::Ok,
            message: format!("{} (Kubeflow {} needs {} and {})", have.join(", "), release.version, needs[0].1, needs[1].1),
            hint: None,
        };
    }
    let found: Vec<String> = low.iter().map(|(name, value, needed)| format!("fs.inotify.{name} is {value}, needs {needed}")).collect();
    let settings: Vec<String> = low.iter().map(|(name, _, needed)| format!("fs.inotify.{name}={needed}")).collect();
    let run: Vec<String> = settings.iter().map(|s| format!("sudo sysctl -w {s}")).collect();
    let persist = settings.iter().map(|s| s.replace('=', " = ")).collect::<Vec<_>>().join("\\n");
    Finding {
        check: "inotify",
        severity: Severity::Error,
        message: format!(
            "{}: the Pods of Kubeflow {} on a local cluster would fail with \"too many open files\"",
            found.join("; "),
            release.version
        ),
        hint: Some(format!(
            "run `{}`; to keep it after a reboot: `printf '{persist}\\n' | sudo tee /etc/sysctl.d/99-kubeflow.conf`",
            run.join(" && ")
        )),
    }
}

/// Free memory and CPUs of the host against the release's footprint (warnings: a smaller set of
/// components fits in less).
pub fn check_resources(root: &Path, release: &Release) -> Vec<Finding> {
    let gib = 1024u64.pow(3);
    let footprint = release.footprint;
    let hint = "a local cluster shares this machine: close other work, use a larger machine, or remove components (`kfctl component remove NAME`)".to_owned();
    let memory = match available_memory(root) {
        Some(bytes) if bytes >= u64::from(footprint.memory_gib) * gib => Finding {
            check: "host-memory",
            severity: Severity::Ok,
            message: format!("{:.1} GiB available (Kubeflow {} needs {} GiB)", bytes as f64 / gib as f64, release.version, footprint.memory_gib),
            hint: None,
        },
        Some(bytes) => Finding {
            check: "host-memory",
            severity: Severity::Warning,
            message: format!(
                "{:.1} GiB available, Kubeflow {}'s base set needs {} GiB",
                bytes as f64 / gib as f64,
                release.version,
                footprint.memory_gib
            ),
            hint: Some(hint.clone()),
        },
        None => Finding {
            check: "host-memory",
            severity: Severity::Warning,
            message: format!("cannot read MemAvailable from {}", root.join("meminfo").display()),
            hint: None,
        },
    };
    let cpu = match cpu_count(root) {
        Some(cpus) if cpus >= footprint.cpu => Finding {
            check: "host-cpu",
            severity: Severity::Ok,
            message: format!("{cpus} CPUs (Kubeflow {} needs {})", release.version, footprint.cpu),
            hint: None,
        },
        Some(cpus) => Finding {
            check: "host-cpu",
            severity: Severity::Warning,
            message: format!("{cpus} CPUs, Kubeflow {}'s base set needs {}", release.version, footprint.cpu),
            hint: Some(hint),
        },
        None => Finding {
            check: "host-cpu",
            severity: Severity::Warning,
            message: format!("cannot count CPUs in {}", root.join("cpuinfo").display()),
            hint: None,
        },
    };
    vec![memory, cpu]
}

/// Every host check for a local cluster of `release`.
pub fn check_host(root: &Path, release: &Release) -> Vec<Finding> {
    let mut findings = vec![check_inotify(root, release)];
    findings.extend(check_resources(root, release));
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::catalog;

    fn fake_proc(instances: &str, watches: &str, mem_kib: u64, cpus: usize) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let inotify = root.path().join("sys/fs/inotify");
        std::fs::create_dir_all(&inotify).unwrap();
        std::fs::write(inotify.join("max_user_instances"), format!("{instances}\n")).unwrap();
        std::fs::write(inotify.join("max_user_watches"), format!("{watches}\n")).unwrap();
        std::fs::write(root.path().join("meminfo"), format!("MemTotal: 99999999 kB\nMemFree: 1 kB\nMemAvailable: {mem_kib} kB\n")).unwrap();
        let cpuinfo: String = (0..cpus).map(|i| format!("processor\t: {i}\nmodel name\t: x\n\n")).collect();
        std::fs::write(root.path().join("cpuinfo"), cpuinfo).unwrap();
        root
    }

    #[test]
    fn low_inotify_limits_give_the_exact_commands() {
        let release = catalog::release("26.03").unwrap();
        let root = fake_proc("128", "8192", 32 * 1024 * 1024, 8);
        let finding = check_inotify(root.path(), release);
        assert_eq!(finding.severity, Severity::Error);
        assert_eq!(
            finding.message,
            "fs.inotify.max_user_instances is 128, needs 2280; fs.inotify.max_user_watches is 8192, needs 1255360: the Pods of Kubeflow 26.03 on a local cluster would fail with \"too many open files\""
        );
        assert_eq!(
            finding.hint.as_deref(),
            Some("run `sudo sysctl -w fs.inotify.max_user_instances=2280 && sudo sysctl -w fs.inotify.max_user_watches=1255360`; to keep it after a reboot: `printf 'fs.inotify.max_user_instances = 2280\\nfs.inotify.max_user_watches = 1255360\\n' | sudo tee /etc/sysctl.d/99-kubeflow.conf`")
        );
    }

    #[test]
    fn only_the_low_limit_is_named() {
        let release = catalog::release("26.03").unwrap();
        let root = fake_proc("128", "2000000", 32 * 1024 * 1024, 8);
        let finding = check_inotify(root.path(), release);
        let hint = finding.hint.unwrap();
        assert!(hint.starts_with("run `sudo sysctl -w fs.inotify.max_user_instances=2280`;"), "{hint}");
        assert!(!hint.contains("max_user_watches"), "{hint}");
    }

    #[test]
    fn enough_is_ok() {
        let release = catalog::release("26.03").unwrap();
        let root = fake_proc("2280", "1255360", 32 * 1024 * 1024, 8);
        let findings = check_host(root.path(), release);
        assert!(findings.iter().all(|f| f.severity == Severity::Ok), "{findings:#?}");
        assert_eq!(findings[0].message, "fs.inotify.max_user_instances=2280, fs.inotify.max_user_watches=1255360 (Kubeflow 26.03 needs 2280 and 1255360)");
        assert_eq!(findings[1].message, "32.0 GiB available (Kubeflow 26.03 needs 16 GiB)");
        assert_eq!(findings[2].message, "8 CPUs (Kubeflow 26.03 needs 8)");
    }

    #[test]
    fn a_small_host_gets_warnings() {
        let release = catalog::release("26.03").unwrap();
        let root = fake_proc("2280", "1255360", 4 * 1024 * 1024, 2);
        let findings = check_resources(root.path(), release);
        assert_eq!(findings[0].severity, Severity::Warning);
        assert_eq!(findings[0].message, "4.0 GiB available, Kubeflow 26.03's base set needs 16 GiB");
        assert_eq!(findings[1].message, "2 CPUs, Kubeflow 26.03's base set needs 8");
    }

    #[test]
    fn a_missing_tree_is_an_error_naming_the_file() {
        let release = catalog::release("v1.4.1").unwrap();
        let finding = check_inotify(Path::new("/nonexistent-proc"), release);
        assert_eq!(finding.severity, Severity::Error);
        assert!(finding.message.contains("unreadable (/nonexistent-proc/sys/fs/inotify/max_user_instances)"), "{}", finding.message);
    }
}
