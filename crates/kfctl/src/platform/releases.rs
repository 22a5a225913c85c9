//! Which Kubernetes versions each Kubeflow release supports, and the versions kfctl creates.
//!
//! The data is in each release's catalog (`crates/kfctl/catalogs/*.yaml`, under `kubernetes:`);
//! this module is the platform layer's view of it.

pub use crate::registry::catalog::{KubernetesSupport, leading_number, parse_minor};

/// The row for `release` ("v1.4.1" or "1.4.1"), if kfctl knows it.
pub fn support(release: &str) -> Option<&'static KubernetesSupport> {
    crate::registry::catalog::release(release).ok().map(|r| &r.kubernetes)
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
        assert_eq!(row.kind_image, "kindest/node:v1.21.14");
        assert!(support("v9.9").is_none());
    }

    #[test]
    fn today_s_releases_get_today_s_kubernetes() {
        let v1_10 = support("v1.10.2").unwrap();
        assert_eq!(v1_10.range(), "1.31 to 1.33");
        let row = support("26.03").unwrap();
        assert_eq!(row.range(), "1.34 or newer");
        assert!(row.accepts((1, 34)) && row.accepts((1, 36)) && !row.accepts((1, 33)));
        // The images kfctl creates must themselves be inside the range (the parser checks this).
        for version in [&row.cloud_version, &row.minikube_version, row.kind_image.rsplit(':').next().unwrap()] {
            assert!(row.accepts(parse_minor(version).unwrap()), "{version}");
        }
    }
}
