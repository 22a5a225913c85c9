//! Which Kubernetes versions each Kubeflow release supports, and the versions kfctl creates.
//!
//! One row per release kfctl knows. The ranges come from the release notes of kubeflow/manifests
//! (v1.4.1 was tested on 1.19 to 1.21); the images are the newest patch of the newest supported
//! minor that each local tool publishes.

/// Supported Kubernetes versions of one Kubeflow release and what kfctl creates for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubernetesSupport {
    /// Kubeflow release ("v1.4.1").
    pub release: &'static str,
    /// Oldest supported minor (1, 19).
    pub min: (u32, u32),
    /// Newest supported minor (1, 21).
    pub max: (u32, u32),
    /// Version string for clouds and minikube ("1.21" / "v1.21.14").
    pub cloud_version: &'static str,
    /// `minikube start --kubernetes-version`.
    pub minikube_version: &'static str,
    /// `kind create cluster --image`.
    pub kind_image: &'static str,
    /// `k3d cluster create --image`.
    pub k3s_image: &'static str,
    /// The snap channel that installs a supported MicroK8s.
    pub microk8s_channel: &'static str,
    /// CPU architecture the release's images are built for.
    pub architecture: &'static str,
}

/// Every release kfctl supports.
pub const RELEASES: &[KubernetesSupport] = &[KubernetesSupport {
    release: "v1.4.1",
    min: (1, 19),
    max: (1, 21),
    cloud_version: "1.21",
    minikube_version: "v1.21.14",
    kind_image: "kindest/node:v1.21.14",
    k3s_image: "rancher/k3s:v1.21.14-k3s1",
    microk8s_channel: "1.21/stable",
    architecture: "amd64",
}];

/// The row for `release` ("v1.4.1" or "1.4.1"), if kfctl knows it.
pub fn support(release: &str) -> Option<&'static KubernetesSupport> {
    let wanted = release.strip_prefix('v').unwrap_or(release);
    RELEASES.iter().find(|row| row.release.strip_prefix('v') == Some(wanted))
}

impl KubernetesSupport {
    /// Does a server at `major.minor` suit this release?
    pub fn accepts(&self, version: (u32, u32)) -> bool {
        self.min <= version && version <= self.max
    }

    /// "1.19 to 1.21", for messages.
    pub fn range(&self) -> String {
        format!("{}.{} to {}.{}", self.min.0, self.min.1, self.max.0, self.max.1)
    }
}

/// Major and minor of a version as Kubernetes reports it ("1", "20+") or as people write it
/// ("v1.21.5", "1.21").
pub fn parse_minor(version: &str) -> Option<(u32, u32)> {
    let version = version.trim().trim_start_matches('v');
    let mut parts = version.split('.');
    let major = leading_number(parts.next()?)?;
    let minor = leading_number(parts.next()?)?;
    Some((major, minor))
}

/// The digits a version part starts with: GKE reports minor "20+", k3s "21+k3s1".
pub fn leading_number(part: &str) -> Option<u32> {
    let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_the_way_servers_and_people_write_them() {
        assert_eq!(parse_minor("v1.21.5"), Some((1, 21)));
        assert_eq!(parse_minor("1.20"), Some((1, 20)));
        assert_eq!(parse_minor("v1.21.14-k3s1"), Some((1, 21)));
        assert_eq!(parse_minor("1"), None);
        assert_eq!(leading_number("20+"), Some(20));
        assert_eq!(leading_number("+"), None);
    }

    #[test]
    fn v1_4_1_accepts_1_19_to_1_21_only() {
        let row = support("1.4.1").expect("v1.4.1 is in the table");
        assert!(row.accepts((1, 19)) && row.accepts((1, 20)) && row.accepts((1, 21)));
        assert!(!row.accepts((1, 18)) && !row.accepts((1, 22)) && !row.accepts((2, 0)));
        assert_eq!(row.range(), "1.19 to 1.21");
        // The images kfctl creates must themselves be inside the range.
        for version in [row.cloud_version, row.minikube_version, row.kind_image.rsplit(':').next().unwrap()] {
            assert!(row.accepts(parse_minor(version).unwrap()), "{version}");
        }
        assert!(support("v9.9").is_none());
    }
}
